"""infer.server through the official `openai` client against uvicorn on 127.0.0.1 (stories260K, a real model with its
real tokenizer): plain and streamed chat (deltas concatenate to the plain text), n > 1, stop strings, 8 concurrent
clients each getting the engine's own offline answer, completions with echo + logprobs equal to scoring.py's,
/v1/models, /health, malformed requests as 400s with OpenAI's error JSON, and a client gone mid-stream freeing its
slot."""
import json
import threading
import time

import httpx
import openai
import pytest

from camel_jax.infer.chat import encode_prompt
from camel_jax.infer.engine import Request
from camel_jax.infer.server import create_app

STORY = "Once upon a time, there was a little girl"


def _chat(i):
    msgs = [{"role": "user", "content": f"Tell me story number {i}."}]
    if i % 3 == 1:
        msgs += [{"role": "assistant", "content": "Once upon a time"}, {"role": "user", "content": "More!"}]
    return msgs, dict(max_tokens=6 + 3 * i, temperature=0.4 * (i % 3), seed=i, top_p=0.95)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from stories_util import stories

    return stories(tmp_path_factory)[1:]


@pytest.fixture(scope="module")
def offline(model):
    """The engine's own answers to the concurrent requests, before the server takes the engine over."""
    engine = model[0]
    out = []
    for i in range(8):
        msgs, kw = _chat(i)
        out.append(engine.run([Request(encode_prompt(msgs, "tulu", engine.tokenizer), kw["max_tokens"],
                                       kw["temperature"], 0, kw["top_p"], seed=kw["seed"])])[-1][0].text)
    return out


@pytest.fixture(scope="module")
def server(model, offline):
    import uvicorn

    app = create_app(model[0], model_name="stories", chat_format="tulu", scorer=model[1])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(600):
        if srv.started:
            break
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield app, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="none", max_retries=0, timeout=120)


def _streamed(stream):
    texts, finish, roles = {}, {}, set()
    for chunk in stream:
        for c in chunk.choices:
            delta = getattr(c, "delta", None)
            text = (delta.content if delta is not None else c.text) or ""
            if delta is not None and delta.role:
                roles.add(delta.role)
            texts[c.index] = texts.get(c.index, "") + text
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    return texts, finish, roles


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["stories"]
    health = httpx.get(server[1] + "/health").json()
    assert health["status"] == "ok" and health["slots"] == 4


def test_chat_plain_streamed_n_and_stop(client):
    msgs = [{"role": "user", "content": "Tell me a story."}]
    plain = client.chat.completions.create(model="stories", messages=msgs, max_tokens=40, temperature=0)
    text = plain.choices[0].message.content
    assert plain.choices[0].finish_reason == "length" and plain.usage.completion_tokens == 40 and len(text) > 20
    chunks = list(client.chat.completions.create(model="stories", messages=msgs, max_tokens=40, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    texts, finish, roles = _streamed(chunks)
    assert texts == {0: text} and finish == {0: "length"} and roles == {"assistant"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40
    stop = text[len(text) // 2:len(text) // 2 + 3]  # a stop string somewhere inside the answer
    cut = client.chat.completions.create(model="stories", messages=msgs, max_tokens=40, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[:text.find(stop)] and cut.choices[0].finish_reason == "stop"
    texts, finish, _ = _streamed(client.chat.completions.create(model="stories", messages=msgs, max_tokens=40,
                                                                temperature=0, stop=stop, stream=True))
    assert texts == {0: text[:text.find(stop)]} and finish == {0: "stop"}
    many = client.chat.completions.create(model="stories", messages=msgs, max_tokens=12, temperature=1.0, n=3,
                                          seed=5, extra_body={"top_k": 40})
    answers = {c.index: c.message.content for c in many.choices}
    assert len(answers) == 3 and len(set(answers.values())) > 1
    texts, _, _ = _streamed(client.chat.completions.create(model="stories", messages=msgs, max_tokens=12, n=3,
                                                           temperature=1.0, seed=5, stream=True,
                                                           extra_body={"top_k": 40}))
    assert texts == answers


def test_concurrent_clients_get_the_offline_answers(client, offline):
    got = [None] * 8

    def ask(i):
        msgs, kw = _chat(i)
        got[i] = client.chat.completions.create(model="stories", messages=msgs, **kw).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == offline


def test_completions_echo_logprobs_equal_scoring(client, model):
    engine, scorer = model
    ids = engine.tokenizer.encode(STORY, add_bos=True)
    echo = client.completions.create(model="stories", prompt=STORY, max_tokens=0, echo=True, logprobs=1).choices[0]
    assert echo.text == STORY
    lp = echo.logprobs
    assert "".join(lp.tokens) == echo.text and lp.token_logprobs[0] is None and len(lp.tokens) == len(ids)
    want = scorer.loglikelihood([(ids[:1], ids[1:])])[0]
    assert lp.token_logprobs[1:] == pytest.approx(list(want.token_logprobs), abs=1e-5)
    greedy = all(max(d, key=d.get) == t for d, t in zip(lp.top_logprobs[1:], lp.tokens[1:]))
    assert greedy == want.is_greedy
    # Token ids as the prompt (as harnesses send them), with an answer: its tokens' log-probs follow the prompt's.
    more = client.completions.create(model="stories", prompt=ids, max_tokens=4, temperature=0, echo=True,
                                     logprobs=2).choices[0]
    assert more.logprobs.token_logprobs[1:len(ids)] == pytest.approx(lp.token_logprobs[1:], abs=1e-5)
    assert len(more.logprobs.tokens) == len(ids) + 4 and all(len(d) == 2 for d in more.logprobs.top_logprobs[1:])
    plain = client.completions.create(model="stories", prompt=[STORY, "The dog"], max_tokens=6, temperature=0)
    assert [c.index for c in plain.choices] == [0, 1] and plain.choices[0].text == " named Lily. She loved"
    texts, _, _ = _streamed(client.completions.create(model="stories", prompt=[STORY, "The dog"], max_tokens=6,
                                                      temperature=0, stream=True))
    assert texts == {c.index: c.text for c in plain.choices}


@pytest.mark.parametrize("body, param", [
    ('{"model": "stories", "messages": [', None),
    ({"model": "stories", "messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}, "frobnicate"),
    ({"model": "stories", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
    ({"model": "stories", "messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
    ({"model": "stories", "messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
    ({"model": "stories", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"model": "stories", "messages": [{"role": "user", "content": "hi " * 300}]}, "messages"),
    ({"model": "stories", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 500}, "messages"),
])
def test_malformed_requests_are_400s(server, body, param):
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(server[1] + "/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and err["message"]


def test_client_errors_through_openai(client):
    with pytest.raises(openai.BadRequestError, match="unrecognized request field 'frobnicate'"):
        client.completions.create(model="stories", prompt="x", extra_body={"frobnicate": 1})
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="stories", prompt="hi " * 300)
    with pytest.raises(openai.BadRequestError, match=r"token ids must be in \[0, 512\)"):
        client.completions.create(model="stories", prompt=[1, 512], max_tokens=0, echo=True)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="x")


def test_a_client_gone_mid_stream_frees_its_slot(server, model):
    app, url = server
    engine, driver = model[0], app.state.service.driver
    step = engine.step

    def slow_step():  # a slow model: the request could not have finished before the client left
        time.sleep(0.01)
        return step()

    engine.step, before = slow_step, driver.cancelled
    try:
        body = {"model": "stories", "prompt": STORY, "max_tokens": 200, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
        for _ in range(200):
            health = httpx.get(url + "/health").json()
            if health["requests"] == 0:
                break
            time.sleep(0.05)
        assert health["requests"] == health["busy_slots"] == health["queued_samples"] == 0
        assert driver.cancelled == before + 1
        with pytest.raises(httpx.ReadTimeout):  # a client that gives up waiting on a plain request
            httpx.post(url + "/v1/completions", json={**body, "stream": False}, timeout=1.0)
        for _ in range(200):
            if driver.cancelled == before + 2:
                break
            time.sleep(0.05)
        assert driver.cancelled == before + 2 and httpx.get(url + "/health").json()["requests"] == 0
    finally:
        engine.step = step


def _driven(app, prompt, max_tokens, **kw):
    """The completion the server's own driver gives (the same seed: the same tokens as through HTTP)."""
    return app.state.service.driver.submit(Request(prompt, max_tokens, **kw)).result()[0]


def test_chat_logprobs_are_the_scorers(client, server, model):
    """Chat logprobs (plain, streamed, greedy, sampled, stop-cut) through the openai client: the model's raw
    log-softmax of the sampled tokens, equal to the Scorer's log-likelihood of the same continuation."""
    engine, scorer = model
    msgs = [{"role": "user", "content": "Tell me a story."}]
    prompt = encode_prompt(msgs, "tulu", engine.tokenizer)
    kw = dict(model="stories", messages=msgs, max_tokens=24, temperature=0.8, seed=3, logprobs=True, top_logprobs=3)
    plain = client.chat.completions.create(**kw).choices[0]
    comp = _driven(server[0], prompt, 24, temperature=0.8, seed=3)
    content = plain.logprobs.content
    assert plain.message.content == comp.text and len(content) == len(comp.tokens) == 24
    want = scorer.loglikelihood([(prompt, comp.tokens)])[0].token_logprobs
    assert [e.logprob for e in content] == pytest.approx(list(want), abs=1e-5)
    assert "".join(e.token for e in content) == comp.text
    assert b"".join(bytes(e.bytes) for e in content) == comp.text.encode()
    for e in content:
        tops = [t.logprob for t in e.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and e.logprob <= tops[0] + 1e-6
    chunks = list(client.chat.completions.create(**kw, stream=True))
    streamed = [e for c in chunks for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == comp.text
    assert [e.token for e in streamed] == [e.token for e in content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content], abs=1e-5)
    assert [[t.token for t in e.top_logprobs] for e in streamed] == [[t.token for t in e.top_logprobs]
                                                                      for e in content]
    greedy = client.chat.completions.create(**{**kw, "temperature": 0, "top_logprobs": 1}).choices[0]
    assert all(e.token == e.top_logprobs[0].token and e.logprob == pytest.approx(e.top_logprobs[0].logprob)
               for e in greedy.logprobs.content)
    text = greedy.message.content
    stop = text[len(text) // 2:len(text) // 2 + 3]
    cut = client.chat.completions.create(**{**kw, "temperature": 0, "stop": [stop]}).choices[0]
    joined = "".join(e.token for e in cut.logprobs.content)  # the tokens whose text begins before the cut
    assert cut.message.content == text[:text.find(stop)] and joined.startswith(cut.message.content)
    assert len(joined) - len(cut.logprobs.content[-1].token) < len(cut.message.content)
    assert client.chat.completions.create(**{**kw, "logprobs": False, "top_logprobs": None}).choices[0].logprobs \
        is None


def _legacy_streamed(stream):
    out = {}
    for chunk in stream:
        for c in chunk.choices:
            o = out.setdefault(c.index, {"text": "", "tokens": [], "token_logprobs": [], "top_logprobs": [],
                                         "text_offset": [], "finish": None})
            o["text"] += c.text
            o["finish"] = c.finish_reason or o["finish"]
            if c.logprobs is not None:
                for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                    o[key] += getattr(c.logprobs, key)
    return out


@pytest.mark.parametrize("echo, logprobs, max_tokens", [(True, 2, 10), (False, 3, 10), (True, None, 10),
                                                        (True, 1, 0)])
def test_streamed_completions_with_echo_and_logprobs_equal_plain(client, echo, logprobs, max_tokens):
    kw = dict(model="stories", prompt=[STORY, "The dog"], max_tokens=max_tokens, temperature=0.7, seed=1,
              n=2 if max_tokens else 1, echo=echo, logprobs=logprobs, stop=["ran"])
    plain = client.completions.create(**kw).choices
    streamed = _legacy_streamed(client.completions.create(**kw, stream=True))
    assert sorted(streamed) == [c.index for c in plain]
    for c in plain:
        s = streamed[c.index]
        assert s["text"] == c.text and s["finish"] == c.finish_reason
        if logprobs is None:
            assert c.logprobs is None and not s["tokens"]
            continue
        lp = c.logprobs
        assert s["tokens"] == lp.tokens and s["text_offset"] == lp.text_offset and len(lp.tokens) > 2
        assert [v is None for v in s["token_logprobs"]] == [v is None for v in lp.token_logprobs] == \
            [echo and i == 0 for i in range(len(lp.tokens))]
        assert [v for v in s["token_logprobs"] if v is not None] == pytest.approx(
            [v for v in lp.token_logprobs if v is not None], abs=1e-5)
        for a, b in zip(s["top_logprobs"], lp.top_logprobs):
            assert (a is None and b is None) or (a.keys() == b.keys() and list(a.values()) == pytest.approx(
                list(b.values()), abs=1e-5) and len(a) <= logprobs)


@pytest.mark.parametrize("path, extra, param", [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": 2}, "logprobs"),
    ("/v1/completions", {"logprobs": 6}, "logprobs"),
    ("/v1/completions", {"logprobs": -1, "stream": True}, "logprobs"),
])
def test_bad_logprobs_values_are_400s(server, path, extra, param):
    body = {"model": "stories", "max_tokens": 2, **extra}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"})
    r = httpx.post(server[1] + path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_a_failed_engine_is_reported_not_hung(server, model):
    """Last in this file: the driver thread ends with the failure (the engine itself is left intact)."""
    url, engine = server[1], model[0]
    step = engine.step

    def broken():
        raise RuntimeError("device lost")

    engine.step = broken
    try:
        body = {"model": "stories", "prompt": STORY, "max_tokens": 4}
        r = httpx.post(url + "/v1/completions", json=body)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        assert "device lost" in r.json()["error"]["message"]
        assert httpx.get(url + "/health").status_code == 503
        again = httpx.post(url + "/v1/completions", json=body)
        assert again.status_code == 503 and "failed earlier" in again.json()["error"]["message"]
    finally:
        engine.step = step
