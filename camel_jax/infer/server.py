"""An OpenAI-compatible HTTP API over one Engine: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`.

Built on FastAPI/Starlette (served by uvicorn, camel_jax/serve.py), as vLLM's OpenAI server is, so the official
`openai` client and evaluation harnesses work unchanged. Every request goes through one `Driver` (infer/driver.py):
concurrent requests share the engine's slots, each joining the running batch at the next step.

* Chat: `messages` through the server's chat format (infer/chat.py: tulu, hf or none), the assistant's answer
  back, with `logprobs` / `top_logprobs` (0-20) in OpenAI's chat format; streaming is SSE in OpenAI's chunk
  format ending `data: [DONE]` (text deltas concatenate to the non-streamed text). Completions: `prompt` as text
  (BOS first, like `generate`), a token-id list, or a list of either; `echo` and `logprobs` (0-5) return log-probs
  of the prompt's and the answer's tokens in the legacy format, which is how harnesses score log-likelihoods over
  HTTP (`max_tokens` 0 with echo: the prompt alone). Log-probs are the model's raw log-softmax (temperature 1,
  as OpenAI's), from a scoring forward (infer/scoring.py, infer/openai_logprobs.py); tokens past a stop's cut are
  left out. Streamed, echo comes first and each chunk carries the log-probs of the tokens whose text begins in
  what has been shown (one forward per chunk; chunks coalesce while scoring runs): the streamed lists
  concatenate to the non-streamed ones.
* Sampling: n, temperature (default 1, as OpenAI), top_p, max_tokens, stop, seed (default: random), and the
  extensions top_k (0 or -1 = off) and ignore_eos. finish_reason: "stop" (EOS or a stop string) or "length".
* Errors are OpenAI's JSON `{"error": {"message", "type", "param", "code"}}`: 400 for malformed JSON, an unknown
  field, a bad value, a prompt too long for the engine's max_len; 404 for another model name.
* A client that disconnects (mid-stream, or while waiting) cancels its request: its slots are freed at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from typing import Any, Literal

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from camel_jax.infer import openai_logprobs as olp
from camel_jax.infer.chat import encode_prompt
from camel_jax.infer.driver import Driver
from camel_jax.infer.engine import Engine, Request

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


class APIError(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.kind = message, param, code, status, kind


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model: str
    n: int = Field(1, ge=1, le=64)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=-1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    user: str | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=olp.CHAT_TOP)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=olp.LEGACY_TOP)


def _stops(stop) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise APIError("'stop' takes up to 4 non-empty strings", "stop")
    return stops


class _Service:
    """What the routes share: the driver, the tokenizer, the scorer, the request checks."""

    def __init__(self, engine: Engine, model_name: str, chat_format: str, scorer: Any):
        if engine.tokenizer is None:
            raise ValueError("the server needs an engine with a tokenizer")
        self.engine, self.tok, self.model_name, self.chat_format = engine, engine.tokenizer, model_name, chat_format
        self.driver, self.scorer, self._score_lock = Driver(engine), scorer, threading.Lock()

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(f"the model {name!r} does not exist; this server serves {self.model_name!r}", "model",
                           "model_not_found", 404)

    def request(self, body: _Sampling, prompt: list[int], max_tokens: int | None, param: str) -> Request:
        room = self.engine.max_len - len(prompt)
        if room < 1 or (max_tokens or 0) > room:
            asked = f" + max_tokens ({max_tokens})" if max_tokens else ""
            raise APIError(f"the prompt ({len(prompt)} tokens){asked} is longer than this model's context of "
                           f"{self.engine.max_len} tokens", param, "context_length_exceeded")
        seed = body.seed if body.seed is not None else secrets.randbits(31)
        r = Request(prompt, max_tokens or room, body.temperature, max(body.top_k, 0), body.top_p, body.n, seed,
                    stop=_stops(body.stop), ignore_eos=body.ignore_eos)
        try:
            self.engine.check(r)
        except ValueError as e:
            raise APIError(str(e), param) from None
        return r

    def score(self, seqs: list[list[int]]):
        with self._score_lock:
            return self.scorer.sequence_logprobs(seqs)

    def need_scorer(self) -> None:
        if self.scorer is None:
            raise APIError("this server was started without scoring; logprobs are unavailable", "logprobs")


async def _chunk(track: olp.Tracker, limit: int):
    n = track.ready(limit)
    return await run_in_threadpool(track.take, n) if n else None


async def _wait(handle, request: HTTPRequest):
    """The completions, or None after cancelling when the client went away meanwhile."""
    task = asyncio.ensure_future(handle.aresult())
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            handle.cancel()
            task.cancel()
            return None


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage(prompt_tokens: int, completions) -> dict:
    done = sum(len(c.tokens) for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}


def _merged(batch) -> list[tuple[int, str, list[int], Any]]:
    """A batch of events as one (sample, text, tokens, completion) per sample, in order of first appearance."""
    out: dict[int, tuple[str, list[int], Any]] = {}
    for ev in batch:
        text, tokens, comp = out.get(ev.sample, ("", [], None))
        out[ev.sample] = (text + ev.text, tokens + ev.tokens, ev.completion or comp)
    return [(sample, *v) for sample, v in out.items()]


async def _stream(handles, head: dict, choice, prompt_tokens: int, include_usage: bool, first=None,
                  n_choices: int = 0, tracks=None):
    """SSE chunks of one or more handles (choice index = handle's position * n + sample): `first(i)` (awaited)
    opens each of n_choices choices, `tracks[i]` (a _Logprobs) adds log-probs to its chunks; cancels on exit."""
    try:
        if first is not None:
            for i in range(n_choices):
                yield _sse({**head, "choices": [await first(i)]})
        try:
            for k, handle in enumerate(handles):  # prompts in turn; each one's samples interleave as they come
                shown = [0] * handle.request.n
                async for batch in handle.abatches():
                    for sample, text, tokens, comp in _merged(batch):
                        index, lp = k * handle.request.n + sample, None
                        shown[sample] += len(text)
                        if tracks is not None:
                            tracks[index].add(tokens)
                            lp = await _chunk(tracks[index], len(comp.text or "") if comp else shown[sample])
                        if text or lp is not None:
                            yield _sse({**head, "choices": [choice(index, text, None, lp)]})
                        if comp is not None:
                            yield _sse({**head, "choices": [choice(index, None, FINISH[comp.finish_reason], None)]})
        except Exception as e:  # the engine failed mid-stream: say so in the stream, as OpenAI's servers do
            yield _sse({"error": {"message": f"the engine failed: {e!r}", "type": "server_error", "param": None,
                                  "code": None}})
            return
        if include_usage:
            yield _sse({**head, "choices": [], "usage": _usage(prompt_tokens, [c for h in handles
                                                                                 for c in h.completions])})
        yield "data: [DONE]\n\n"
    finally:  # a client gone mid-stream lands here (the task is cancelled): free its slots
        for h in handles:
            if h.completions is None:
                h.cancel()


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    err = (exc.errors() or [{}])[0]
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    kind = err.get("type", "")
    if kind == "json_invalid":
        reason = err.get("ctx", {}).get("error", err.get("msg"))
        return _error(400, f"malformed JSON body: {reason}", code="json_invalid")
    field = ".".join(loc) or None
    if kind == "extra_forbidden":
        return _error(400, f"unrecognized request field {field!r}", param=field, code="unknown_field")
    return _error(400, f"{field}: {err.get('msg', 'invalid value')}" if field else err.get("msg", "invalid request"),
                  param=field, code="invalid_value")


def create_app(engine: Engine, *, model_name: str = "camel_jax", chat_format: str = "tulu", scorer: Any = None
               ) -> FastAPI:
    """The app over `engine` (which needs its tokenizer); `scorer` (an infer.scoring.Scorer on the same weights)
    enables `logprobs`. The engine's driver thread runs while the app does (its lifespan)."""
    svc = _Service(engine, model_name, chat_format, scorer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        svc.driver.start()
        try:
            yield
        finally:
            await run_in_threadpool(svc.driver.close)

    app = FastAPI(title="camel_jax", lifespan=lifespan)
    app.state.service = svc

    @app.exception_handler(APIError)
    async def _api_error(_, exc: APIError):
        return _error(exc.status, exc.message, exc.kind, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, exc: RequestValidationError):
        return _validation_error(exc)

    @app.exception_handler(Exception)
    async def _failed(_, exc: Exception):  # a failed engine or a bug: still OpenAI's error shape, as a 500
        return _error(500, f"{type(exc).__name__}: {exc}", "server_error")

    @app.exception_handler(HTTPException)
    async def _http(_, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else
                      "invalid_request_error")

    @app.get("/health")
    async def health():
        if svc.driver.error is not None:
            return _error(503, f"the engine failed: {svc.driver.error!r}", "server_error")
        flight, busy, queued = svc.driver.pending()
        return {"status": "ok", "requests": flight, "busy_slots": busy, "queued_samples": queued,
                "slots": engine.slots}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                             "owned_by": "camel_jax", "max_model_len": engine.max_len}]}

    def submit(r: Request, stream: bool):
        try:
            return svc.driver.submit(r, stream=stream, loop=asyncio.get_running_loop())
        except RuntimeError as e:
            raise APIError(str(e), status=503, kind="server_error") from None

    def tracker(prompt: list[int], fmt: str, top: int, offset: int = 0) -> olp.Tracker:
        return olp.Tracker(svc.tok, lambda seq: svc.score([seq])[0], prompt, fmt, top, offset)

    async def whole(prompt: list[int], comp, fmt: str, top: int, echoed: dict | None = None):
        """The log-probs of one whole answer (after those of the echoed prompt)."""
        track = tracker(prompt, fmt, top, sum(len(t) for t in echoed["tokens"]) if echoed else 0)
        track.add(comp.tokens if comp is not None else [])
        return olp.joined(fmt, echoed, await _chunk(track, len(comp.text or "") if comp is not None else 0))

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, http: HTTPRequest):
        svc.check_model(body.model)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError("top_logprobs needs logprobs: true", "top_logprobs")
        if body.logprobs:
            svc.need_scorer()
        top = body.top_logprobs or 0
        msgs = [{"role": m.role, "content": m.content if isinstance(m.content, str) else
                 "".join(p.text for p in m.content)} for m in body.messages]
        try:
            prompt = encode_prompt(msgs, chat_format, svc.tok)
        except ValueError as e:
            raise APIError(f"messages: {e}", "messages") from None
        r = svc.request(body, prompt, body.max_completion_tokens or body.max_tokens, "messages")
        cid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name}
        handle = submit(r, body.stream)
        if body.stream:
            def choice(i, text, finish, lp):
                return {"index": i, "delta": {} if text is None else {"content": text}, "logprobs": lp,
                        "finish_reason": finish}

            async def first(i):
                return {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": None}

            tracks = [tracker(prompt, "chat", top) for _ in range(r.n)] if body.logprobs else None
            return StreamingResponse(_stream([handle], head, choice, len(prompt), bool(
                body.stream_options and body.stream_options.include_usage), first, r.n, tracks),
                media_type="text/event-stream")
        comps = await _wait(handle, http)
        if comps is None:
            return _error(499, "client closed the request")
        lps = [await whole(prompt, c, "chat", top) if body.logprobs else None for c in comps]
        return {"id": cid, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": lp,
                             "finish_reason": FINISH[c.finish_reason]} for i, (c, lp) in enumerate(zip(comps, lps))],
                "usage": _usage(len(prompt), comps)}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http: HTTPRequest):
        svc.check_model(body.model)
        raw = body.prompt
        many = isinstance(raw, list) and raw and not isinstance(raw[0], int)
        items = list(raw) if many else [raw]
        if not items or any(isinstance(p, list) and not p for p in items):
            raise APIError("'prompt' is empty", "prompt")
        prompts = [list(p) if isinstance(p, list) else encode_prompt(p, "none", svc.tok) for p in items]
        vocab = engine.cfg.vocab_size
        if any(not 0 <= t < vocab for p in prompts for t in p):
            raise APIError(f"prompt token ids must be in [0, {vocab})", "prompt")
        texts = [p if isinstance(p, str) else svc.tok.decode(ids) for p, ids in zip(items, prompts)]
        if body.max_tokens == 0 and not body.echo:
            raise APIError("max_tokens 0 needs echo (the prompt is then all there is to return)", "max_tokens")
        top = body.logprobs
        if top is not None:
            svc.need_scorer()
        if body.max_tokens == 0 and body.n > 1:
            raise APIError("n > 1 needs max_tokens >= 1", "n")
        reqs = [svc.request(body, p, body.max_tokens or None, "prompt") if body.max_tokens else None
                for p in prompts]
        for p in prompts:
            if not 0 < len(p) <= engine.max_len:
                raise APIError(f"the prompt ({len(p)} tokens) is longer than this model's context of "
                               f"{engine.max_len} tokens", "prompt", "context_length_exceeded")
        cid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
        head = {"id": cid, "object": "text_completion", "created": created, "model": model_name}
        handles = [submit(r, body.stream) for r in reqs if r is not None]

        def echoed(ids: list[int]):
            return olp.legacy(svc.tok, ids, svc.score([ids])[0], 0, len(ids), top, 0)

        if body.stream:
            n = body.n
            tracks = [tracker(prompts[i // n], "legacy", top) for i in range(len(prompts) * n)] \
                if top is not None else None

            def choice(i, text, finish, lp):
                return {"index": i, "text": text or "", "logprobs": lp, "finish_reason": finish}

            async def first(i):  # the echo (and its log-probs); without an answer to come, the choice ends here
                lp = await run_in_threadpool(echoed, prompts[i // n]) if top is not None else None
                if lp is not None:
                    tracks[i].offset = sum(len(t) for t in lp["tokens"])
                return choice(i, texts[i // n], None if handles else "length", lp)

            return StreamingResponse(_stream(handles, head, choice, sum(len(p) for p in prompts), bool(
                body.stream_options and body.stream_options.include_usage), first if body.echo else None,
                len(prompts) * n, tracks), media_type="text/event-stream")
        results = []
        for h in handles:
            comps = await _wait(h, http)
            if comps is None:
                for other in handles:
                    other.cancel()
                return _error(499, "client closed the request")
            results.append(comps)
        if not handles:  # echo of the prompts alone
            results = [[None] for _ in prompts]
        choices = []
        for k, (ids, text, comps) in enumerate(zip(prompts, texts, results)):
            echo_lp = await run_in_threadpool(echoed, ids) if body.echo and top is not None else None
            for s, c in enumerate(comps):
                lp = await whole(ids, c, "legacy", top, echo_lp) if top is not None else None
                choices.append({"index": k * len(comps) + s, "text": (text if body.echo else "") +
                                (c.text if c is not None else ""), "logprobs": lp,
                                "finish_reason": FINISH[c.finish_reason] if c else "length"})
        return {"id": cid, "object": "text_completion", "created": created, "model": model_name,
                "choices": choices, "usage": _usage(sum(len(p) for p in prompts),
                                                    [c for cs in results for c in cs if c is not None])}

    return app
