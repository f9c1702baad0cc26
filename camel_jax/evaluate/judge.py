"""A pairwise judge over any OpenAI-compatible chat endpoint, with AlpacaFarm's and AlpacaEval's judge templates.

Why pluggable: the paper's judge (GPT-4-0314 through AlpacaFarm's `greedy_gpt4` annotator) is gone, so a user picks
one — an API model, or a local server such as `python -m camel_jax.serve` — by `url` and `model`.

What it reproduces (alpaca_eval @ cd543a14 `evaluators_configs/`, read from ../shared/data/alpaca_eval/):
- the template and its decoding (configs.yaml: model, temperature 0, max_tokens, batch_size, parser). The default is
  `alpaca_farm_greedy_gpt4`, the paper's annotator: its `chatml_b5` prompt judges 5 pairs per call, answered
  "Output (a)"/"Output (b)" in order. We keep its batching because the batch is part of the prompt the paper's judge
  saw (one-pair calls would be a different judge); a partial batch is padded with alpaca_eval's dummy pair
  ("1+1=", "2", "3") and a reply whose answer count is not the batch size is unparseable for the whole batch, as
  alpaca_eval treats it. `alpaca_eval_gpt4` is the single-pair AlpacaEval 1 judge (a Python ranking), more robust
  for a weak local judge.
- ChatML text → chat messages as alpaca_eval's `_prompt_to_chatml` splits it; placeholders filled pair by pair in
  order of appearance (single pass, so an output containing "{output_1}" is not re-substituted).
- each pair's output order randomised (seeded by seed, instruction and both outputs; recorded as `swapped`) and
  mapped back, since judges favour a position; identical outputs are a draw without a call (alpaca_eval does so).

Judgments are cached in a jsonl file keyed by (instruction, both outputs in the order shown, judge model, template
name and text hash, decoding), so a rerun or a rescore asks nothing already answered; an unparseable reply is not
cached (a rerun asks again) and is returned as preference None with its raw text — never a tie. Transient HTTP
failures (connection errors, timeouts, 408/409/425/429/5xx) are retried with exponential backoff (Retry-After
honoured); a prompt the endpoint refuses (400/413/422, typically longer than a local judge's context) leaves that
batch's pairs unjudged with the message as `error`; any other error (401, 404...) stops with the endpoint's
message. At most `concurrency` requests are in flight.

httpx, not the `openai` package: one POST per call, with the retry policy and timeouts stated here rather than
layered over the client's own retries, and the same transport hook the tests use.
"""
from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Sequence

import httpx
import yaml

DEFAULT_TEMPLATE = "alpaca_farm_greedy_gpt4"
PLACEHOLDERS = ("instruction", "output_1", "output_2")
DUMMY_PAIR = {"instruction": "1+1=", "output_1": "2", "output_2": "3"}  # alpaca_eval's padding example
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BATCH_REFUSED = frozenset({400, 413, 422})  # this prompt refused (e.g. beyond the judge's context): that batch only


class JudgeError(RuntimeError):
    """The judge could not be set up or reached (bad template, refused request, retries exhausted)."""


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    text: str
    batch_size: int
    parser: str  # "regex" (outputs_to_match, in order of appearance) or "ranking" (a Python list of dicts)
    outputs_to_match: tuple[tuple[int, str], ...] = ()
    default_model: str = ""
    max_tokens: int = 250
    temperature: float = 0.0

    @property
    def digest(self) -> str:
        spec = [self.name, self.text, self.batch_size, self.parser, self.outputs_to_match, self.max_tokens,
                self.temperature]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def load_template(name: str, data_dir: str | os.PathLike) -> Template:
    """The judge `name` from `<data_dir>/alpaca_eval/evaluators_configs/<name>/configs.yaml`."""
    root = Path(data_dir) / "alpaca_eval" / "evaluators_configs"
    cfg_path = root / name / "configs.yaml"
    if not cfg_path.is_file():
        have = sorted(p.name for p in root.iterdir() if (p / "configs.yaml").is_file()) if root.is_dir() else []
        raise JudgeError(f"judge template {name!r}: no {cfg_path} (templates there: {', '.join(have) or 'none'})")
    cfg = (yaml.safe_load(cfg_path.read_text()) or {}).get(name)
    if not isinstance(cfg, dict) or "prompt_template" not in cfg:
        raise JudgeError(f"{cfg_path}: expected a top-level {name!r} entry with a prompt_template")
    text = (root / cfg["prompt_template"]).read_text()
    kw = cfg.get("completions_kwargs", {})
    match = (cfg.get("completion_parser_kwargs") or {}).get("outputs_to_match")
    parser = cfg.get("fn_completion_parser", "regex_parser" if match else None)
    if parser not in ("regex_parser", "ranking_parser"):
        raise JudgeError(f"{cfg_path}: completion parser {parser!r} is not supported (regex_parser, ranking_parser)")
    tpl = Template(name=name, text=text, batch_size=int(cfg.get("batch_size", 1)), parser=parser.split("_")[0],
                   outputs_to_match=tuple((int(k), v) for k, v in (match or {}).items()),
                   default_model=kw.get("model_name", ""), max_tokens=int(kw.get("max_tokens", 250)),
                   temperature=float(kw.get("temperature", 0.0)))
    for key in PLACEHOLDERS:
        if text.count("{" + key + "}") != tpl.batch_size:
            raise JudgeError(f"{cfg_path}: {{{key}}} appears {text.count('{' + key + '}')} times in "
                             f"{cfg['prompt_template']}, batch_size is {tpl.batch_size}")
    return tpl


def fill(template: Template, pairs: Sequence[dict]) -> str:
    """The template with the k-th occurrence of each placeholder taken from pairs[k], in one pass."""
    seen = dict.fromkeys(PLACEHOLDERS, 0)

    def sub(m):
        key = m.group(1)
        value = pairs[seen[key]][key]
        seen[key] += 1
        return str(value)

    return re.sub(r"\{(" + "|".join(PLACEHOLDERS) + r")\}", sub, template.text)


def to_messages(prompt: str) -> list[dict]:
    """ChatML text → [{"role", "content"}], split as alpaca_eval's `_prompt_to_chatml` does."""
    messages = []
    for part in prompt.strip().split("<|im_start|>")[1:]:
        role, _, rest = part.partition("\n")
        messages.append({"role": role.strip(), "content": rest.split("<|im_end|>", 1)[0].strip()})
    return messages


def parse(template: Template, completion: str | None) -> list[int] | None:
    """A reply → one preference per pair in the batch (1 = output_1, 2 = output_2, as shown), or None."""
    if not isinstance(completion, str):
        return None
    if template.parser == "ranking":
        try:
            ranking = ast.literal_eval(completion.strip())
            rank = [d for d in ranking if d["model"] == "model_1"][0]["rank"]
        except Exception:  # any malformed reply: unparseable, counted by the caller
            return None
        return [rank] if rank in (1, 2) else None
    patterns = [(key, re.compile(rx)) for key, rx in template.outputs_to_match]
    found, rest = [], completion
    while True:  # the earliest match of any pattern, then continue after it (alpaca_eval's regex_parser)
        hits = [(m.start(), m.end(), key) for key, rx in patterns if (m := rx.search(rest))]
        if not hits:
            break
        _, end, key = min(hits)
        found.append(key)
        rest = rest[end:]
    return found if len(found) == template.batch_size else None


def _swapped(seed: int, instruction: str, output: str, reference: str) -> bool:
    return random.Random(json.dumps([seed, instruction, output, reference])).random() < 0.5


class Judge:
    """Judges (instruction, model output, reference output) triples. `url=None` answers from the cache only."""

    def __init__(self, url: str | None, model: str, template: Template, cache_path: str | os.PathLike | None = None,
                 *, seed: int = 0, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, max_retries: int = 6, backoff: float = 1.0, timeout: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        if concurrency < 1 or max_retries < 0:
            raise JudgeError("judge concurrency must be >= 1 and max_retries >= 0")
        self.url = None if url is None else (url if url.rstrip("/").endswith("/chat/completions")
                                             else url.rstrip("/") + "/chat/completions")
        self.model, self.template, self.seed = model, template, seed
        self.cache_path = Path(cache_path) if cache_path else None
        self.concurrency, self.max_retries, self.backoff, self.timeout = concurrency, max_retries, backoff, timeout
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._transport = transport
        self.calls = 0  # chat requests answered (retries not counted)
        self._cache = self._load_cache()

    def describe(self) -> dict:
        return {"judge_model": self.model, "judge_template": self.template.name,
                "judge_template_digest": self.template.digest, "judge_url": self.url, "judge_seed": self.seed}

    def _key(self, instruction: str, output_1: str, output_2: str) -> str:
        spec = [instruction, output_1, output_2, self.model, self.template.name, self.template.digest]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()

    def _load_cache(self) -> dict[str, dict]:
        cache: dict[str, dict] = {}
        if self.cache_path is None or not self.cache_path.exists():
            return cache
        data = self.cache_path.read_bytes()
        if data and not data.endswith(b"\n"):  # a torn last line (killed while writing): dropped, asked again
            data = data[:data.rfind(b"\n") + 1]
            os.truncate(self.cache_path, len(data))
        for n, line in enumerate(data.decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                cache[rec["key"]] = rec
            except (ValueError, KeyError, TypeError):
                raise JudgeError(f"{self.cache_path}:{n}: not a judgment cache record") from None
        return cache

    def _store(self, recs: list[dict]) -> None:
        if self.cache_path is None or not recs:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache_path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in recs))

    def judge(self, pairs: Sequence[dict]) -> list[dict]:
        """pairs: dicts with id, instruction, output (the model's), reference. Returns per pair: id, preference
        (AlpacaEval coding against the reference: 1 reference wins, 2 model wins, 0 identical outputs, None
        unparseable or refused), swapped (the model's output was shown first), cached, raw (the reply, if asked),
        error (the endpoint's message when it refused this batch's prompt with 400/413/422, else None)."""
        results, todo = [], []
        for pair in pairs:
            ins, out, ref = pair["instruction"], pair["output"], pair["reference"]
            swapped = _swapped(self.seed, ins, out, ref)
            shown = {"instruction": ins, "output_1": out if swapped else ref, "output_2": ref if swapped else out}
            res = {"id": pair["id"], "swapped": swapped, "preference": None, "cached": False, "raw": None,
                   "error": None}
            results.append(res)
            if out == ref:
                res["preference"] = 0
                continue
            key = self._key(shown["instruction"], shown["output_1"], shown["output_2"])
            hit = self._cache.get(key)
            if hit is not None:
                res.update(cached=True, raw=hit.get("raw"), preference=self._unswap(hit["preference"], swapped))
            else:
                todo.append((res, shown, key))
        if todo and self.url is None:
            raise JudgeError(f"{len(todo)} pairs are not in the judgment cache "
                             f"{self.cache_path or '(none)'} and no judge URL was given")
        bs = self.template.batch_size
        batches = [todo[i:i + bs] for i in range(0, len(todo), bs)]
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client, \
                concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._ask, client, [s for _, s, _ in b]): b for b in batches}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    batch, (raw, error) = futures[fut], fut.result()
                    self.calls += error is None
                    prefs = parse(self.template, raw)
                    new = []
                    for j, (res, _, key) in enumerate(batch):
                        res["raw"], res["error"] = raw, error
                        if prefs is not None:
                            res["preference"] = self._unswap(prefs[j], res["swapped"])
                            new.append({"key": key, "preference": prefs[j], "raw": raw, "judge_model": self.model,
                                        "template": self.template.name})
                            self._cache[key] = new[-1]
                    self._store(new)  # as each batch lands: a killed run keeps what it had
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results

    @staticmethod
    def _unswap(pref: int, swapped: bool) -> int:
        return 3 - pref if swapped else pref

    def _ask(self, client: httpx.Client, shown: list[dict]) -> tuple[str | None, str | None]:
        """(the reply's content, None), or (None, the error) when the endpoint refused this prompt."""
        pad = [DUMMY_PAIR] * (self.template.batch_size - len(shown))
        body = {"model": self.model, "messages": to_messages(fill(self.template, list(shown) + pad)),
                "temperature": self.template.temperature, "max_tokens": self.template.max_tokens}
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                resp = client.post(self.url, json=body, headers=self._headers)
            except httpx.TransportError as e:
                error, wait = f"{type(e).__name__}: {e}", self._delay(attempt, None)
            else:
                if resp.status_code == 200:
                    break
                error = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code in BATCH_REFUSED:
                    return None, error
                if resp.status_code not in TRANSIENT_STATUS:
                    raise JudgeError(f"judge {self.url} refused the request: {error}")
                wait = self._delay(attempt, resp.headers.get("retry-after"))
            if attempt == self.max_retries:
                raise JudgeError(f"judge {self.url}: {self.max_retries + 1} attempts failed, last: {error}")
            time.sleep(wait)
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.url}: not an OpenAI chat completion: {resp.text[:300]}") from None
        return content, None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        try:
            return min(120.0, max(0.0, float(retry_after)))
        except (TypeError, ValueError):
            return min(60.0, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)
