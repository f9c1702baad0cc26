"""The continuous-batching engine: a fixed number of decode slots, a queue of requests, refilled as rows end.

A free slot takes the next queued sample: its prompt is prefilled alone (right-padded to a power-of-two bucket, so
few shapes compile; the n samples of a request share one prefill) and inserted, and one jitted step
(`decode.decode_step`) advances every active slot by a token. A row ends on EOS, a stop sequence or
max_new_tokens and its slot is refilled before the next step, so a batch is never held by its longest answer.
Sampling parameters are per-row arrays and the attended window takes a few static sizes, so a mix of requests
compiles one step per window size and one prefill per prompt bucket, nothing per request.

Batch invariance: a row's computation never mixes with its neighbours' (no shared padding, per-row positions and
lengths, per-request PRNG keys folded with the token index), so a request's tokens do not depend on the slot count,
its slot or the other requests (tested).

Stop sequences: encoded to token ids and matched on device as suffixes of the generated tokens (ending the row in
the step), and searched in the decoded text on the host, which catches a stop whose text spans tokens in a way
its own encoding does not; the text is cut exactly before the stop. `tokens` keep everything generated but EOS.

Serving (infer/driver.py): `on_token(rid, sample, tokens, completion)` is called after every token a sample gets
(completion None until it ends), so a caller can stream; `cancel(rid)` ends a request at once, freeing its slots and
dropping its queued samples; `forget(rid)` drops a delivered request's prompt and results (a server runs forever).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np

from camel_jax.model import partition
from camel_jax.model.config import LlamaConfig
from camel_jax.model.mesh import check_model
from camel_jax.infer import decode
from camel_jax.infer.compile_cache import StoredJit
from camel_jax.infer.paged import PAGE_SIZES, page_size
from camel_jax.infer.sampling import request_key


@dataclasses.dataclass(frozen=True)
class Request:
    prompt: Sequence[int]  # token ids (BOS included when wanted)
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    n: int = 1  # samples of this prompt (sample i is seeded by (seed, i))
    seed: int = 0
    stop: Sequence[str] = ()  # stop strings (need the engine's tokenizer)
    stop_token_ids: Sequence[Sequence[int]] = ()  # stop sequences given as ids
    ignore_eos: bool = False


@dataclasses.dataclass
class Completion:
    tokens: list[int]  # generated ids, EOS excluded
    text: str | None  # decoded and cut before any stop string (None without a tokenizer)
    finish_reason: str  # "eos", "stop", "length" or "cancelled"


def _ruled(fn, table):
    def traced(*args, **kw):
        with partition.rules(table):
            return fn(*args, **kw)
    return traced


def _release(state, row):
    return {**state, "active": state["active"].at[row].set(False, mode="drop")}


DECODE_ATTENTION = ("auto", "dense", "paged", "paged_interpret")


def _decode_attention(choice: str, max_len: int, head_dim: int) -> str:
    if choice not in DECODE_ATTENTION:
        raise ValueError(f"decode_attention must be one of {', '.join(DECODE_ATTENTION)}, got {choice!r}")
    if choice != "auto":
        if choice != "dense" and page_size(max_len) is None:
            raise ValueError(f"decode_attention {choice!r} needs max_len divisible by one of {PAGE_SIZES}, got "
                             f"{max_len}")
        return choice
    # The kernel's Mosaic lowering takes head dims in multiples of 128 (LLaMA's; SmolLM2's 64 stays dense).
    fits = page_size(max_len) is not None and head_dim % 128 == 0
    return "paged" if jax.default_backend() == "tpu" and fits else "dense"


@functools.lru_cache(maxsize=16)
def _programs(cfg: LlamaConfig, paged: str):
    """The jitted prefill, insert, step and release for one model config (and decode attention), shared by every
    Engine of the process: jit's cache then keys compiled programs by shapes, shardings and mesh alone, so a second
    engine of the same model (an evaluation's rerun, a test) reuses what the first compiled instead of compiling it
    all again. Each keeps its executables on disk too when a compile cache is on (compile_cache.StoredJit: a
    warm process then neither traces nor lowers them)."""
    ident = repr((cfg, paged))
    return (StoredJit(_ruled(functools.partial(decode.prefill, cfg=cfg), partition.PREFILL_RULES), "prefill",
                      ident),
            StoredJit(_ruled(functools.partial(decode.insert, cfg=cfg, kt=not paged), partition.SERVE_RULES),
                      "insert", ident, donate_argnums=(0, 1)),
            StoredJit(_ruled(functools.partial(decode.decode_step, cfg=cfg, paged=paged), partition.SERVE_RULES),
                      "step", ident, static_argnames="window", donate_argnums=(1, 2)),
            StoredJit(_release, "release", donate_argnums=0),
            StoredJit(_ruled(decode.take_rows, partition.SERVE_RULES), "take_rows"),  # new shapes: no donation
            StoredJit(_ruled(decode.pad_rows, partition.SERVE_RULES), "pad_rows"))


def row_counts(slots: int, shards: int = 1) -> tuple[int, ...]:
    """The batch sizes a step runs at: all slots, and the powers of two below that split over the mesh's shards."""
    return (slots,) + tuple(n for n in (1 << k for k in range(slots.bit_length() - 1, -1, -1))
                            if n < slots and n % shards == 0)


class Engine:
    """slots: decode rows (a multiple of the mesh's dp). max_len: cache slots per row (prompt + new tokens must
    fit; default cfg.max_seq_len). window_block: the first cache block's size (decode.cache_blocks: then doubling
    up to decode.MAX_BLOCK); a step attends the blocks holding the longest row present.
    max_stops / stop_len: stop sequences checked on device per row, and their longest length in tokens.
    quantize: None/"none", or "int8" (weight-only, per output channel: infer/quantize.py).
    decode_attention: "auto" (the Pallas paged kernel on TPU when a page size divides max_len and the head dim
    is a multiple of 128, else dense),
    "dense" (grouped attention over the bucketed window), "paged", or "paged_interpret" (the kernel through
    Pallas' interpreter: any backend, slow; for tests).
    compact: once nothing is queued and at most half the rows are busy, move the busy rows into a batch of their
    own (row_counts), grown back when requests queue again: a step computes every row of its batch, busy or not
    (on CPU, 2 answers running on in 8 slots at an evaluation's window cost 250 ms a step; alone, ~120 ms)."""

    def __init__(self, params: dict, cfg: LlamaConfig, *, slots: int = 8, max_len: int | None = None,
                 mesh: jax.sharding.Mesh | None = None, tokenizer: Any = None, eos_id: int | None = None,
                 window_block: int = 128, min_bucket: int = 16, max_stops: int = 4, stop_len: int = 8,
                 quantize: str | None = None, decode_attention: str = "auto", compact: bool = True):
        self.cfg, self.slots, self.mesh, self.tokenizer = cfg, slots, mesh, tokenizer
        self.max_len = max_len or cfg.max_seq_len
        self.eos_id = eos_id if eos_id is not None else (tokenizer.eos_id if tokenizer else cfg.eos_token_id)
        self.min_bucket, self.max_stops, self.stop_len = min_bucket, max_stops, stop_len
        if mesh is not None:
            check_model(dict(mesh.shape), cfg)
            if slots % partition.data_shards(mesh, partition.SERVE_RULES):
                raise ValueError(f"slots {slots} do not split over the mesh's dp={mesh.shape['dp']}")
        self.decode_attention = _decode_attention(decode_attention, self.max_len, cfg.dim_per_head)
        paged = {"paged": "kernel", "paged_interpret": "interpret"}.get(self.decode_attention, "")
        self.blocks = decode.cache_blocks(self.max_len, window_block, paged=bool(paged))
        with self._context():
            self.weights = decode.serving_weights(params, cfg, mesh, quantize)
            self.cache = decode.empty_cache(cfg, slots, self.max_len, mesh, self.blocks, kt=not paged)
            self.state = decode.empty_state(slots, max_stops, stop_len, mesh)
        self._prefill, self._insert, self._step, self._release, self._take, self._pad = _programs(cfg, paged)
        shards = partition.data_shards(mesh, partition.SERVE_RULES) if mesh is not None else 1
        self.row_counts = row_counts(slots, shards) if compact else (slots,)
        self.rows = slots  # the rows of the device batch now (compaction: fewer)
        self._queue: collections.deque = collections.deque()
        self._requests: list[Request] = []
        self._results: list[list[Completion | None]] = []
        self._prefilled: dict[int, tuple] = {}  # request -> (logits, kv, samples still to insert)
        self._slot: list[tuple[int, int] | None] = [None] * slots  # (request, sample) per row of the batch
        self._len = np.zeros(slots, np.int64)  # host mirror of state["lengths"]
        self._out: list[list[int]] = [[] for _ in range(slots)]
        self._stop_ids: dict[int, list[list[int]]] = {}
        self._finished: list[int] = []  # requests completed since the last pop_finished()
        self.on_token: Callable[[int, int, list[int], Completion | None], None] | None = None

    def _context(self):
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    # -- requests -------------------------------------------------------------------------------------------
    def check(self, r: Request) -> None:
        """Raise ValueError naming what is wrong with a request (touches no engine state: any thread may call)."""
        p = list(r.prompt)
        if not p:
            raise ValueError("a prompt needs at least one token (use BOS for an unconditional start)")
        if min(p) < 0 or max(p) >= self.cfg.vocab_size:
            raise ValueError(f"prompt token ids must be in [0, {self.cfg.vocab_size})")
        if r.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {r.max_new_tokens}")
        if len(p) + r.max_new_tokens > self.max_len:
            raise ValueError(f"prompt ({len(p)} tokens) + max_new_tokens ({r.max_new_tokens}) exceeds the "
                             f"engine's max_len {self.max_len}")
        if r.temperature < 0 or not 0 < r.top_p <= 1 or r.top_k < 0 or r.n < 1:
            raise ValueError(f"bad sampling values: temperature {r.temperature} (>= 0), top_p {r.top_p} (in "
                             f"(0, 1]), top_k {r.top_k} (>= 0), n {r.n} (>= 1)")
        if r.stop and self.tokenizer is None:
            raise ValueError("stop strings need the engine's tokenizer (or give stop_token_ids)")

    def submit(self, request: Request) -> int:
        """Queue a request; returns its index (results come back in submission order)."""
        self.check(request)
        rid = len(self._requests)
        self._requests.append(request)
        self._results.append([None] * request.n)
        stops = [list(s) for s in request.stop_token_ids] + [self.tokenizer.encode(s) for s in request.stop]
        self._stop_ids[rid] = [s for s in stops if 0 < len(s)]
        self._queue.extend((rid, i) for i in range(request.n))
        return rid

    def _row_params(self, rid: int, sample: int) -> dict:
        r = self._requests[rid]
        stops = np.full((self.max_stops, self.stop_len), -1, np.int32)
        for i, s in enumerate([s for s in self._stop_ids[rid] if len(s) <= self.stop_len][:self.max_stops]):
            stops[i, self.stop_len - len(s):] = s
        return {"max_new": np.int32(r.max_new_tokens), "eos": np.int32(-1 if r.ignore_eos else self.eos_id),
                "temperature": np.float32(r.temperature), "top_k": np.int32(r.top_k),
                "top_p": np.float32(r.top_p), "keys": request_key(r.seed, sample), "stops": stops}

    def bucket(self, n: int) -> int:
        """The padded prefill length of an n-token prompt: a power of two >= min_bucket, at most max_len."""
        return min(self.max_len, max(self.min_bucket, 1 << (n - 1).bit_length()))

    # -- the loop -------------------------------------------------------------------------------------------
    def insert(self, slot: int, rid: int, sample: int) -> None:
        """Prefill (once per request) and place sample `sample` of request `rid` into a free `slot`."""
        if not 0 <= slot < self.rows or self._slot[slot] is not None:
            raise IndexError(f"slot {slot} is not a free slot of 0..{self.rows - 1}")
        prompt = list(self._requests[rid].prompt)
        with self._context():
            if rid not in self._prefilled:
                tokens = np.zeros((1, self.bucket(len(prompt))), np.int32)
                tokens[0, :len(prompt)] = prompt
                logits, kv = self._prefill(self.weights, tokens, np.int32(len(prompt)))
                self._prefilled[rid] = [logits, kv, self._requests[rid].n]
            entry = self._prefilled[rid]
            self.cache, self.state, tok, done = self._insert(self.cache, self.state, np.int32(slot), entry[1],
                                                             np.int32(len(prompt)), entry[0],
                                                             self._row_params(rid, sample))
        entry[2] -= 1
        if entry[2] == 0:
            del self._prefilled[rid]
        self._slot[slot], self._len[slot], self._out[slot] = (rid, sample), len(prompt), []
        self._advance(slot, int(tok), bool(done))

    def _fill(self) -> None:
        if self._queue and self.rows < self.slots:  # grow back as far as the queue needs
            need = min(self.slots, sum(s is not None for s in self._slot) + len(self._queue))
            n = min(c for c in self.row_counts if c >= need)
            if n > self.rows:
                self._resize(list(range(self.rows)), n)
        for slot in range(self.rows):
            while self._slot[slot] is None and self._queue:
                self.insert(slot, *self._queue.popleft())

    def _compact(self, live: list[int]) -> None:
        """Nothing queued: the busy rows into the smallest batch of row_counts holding them, if that halves it."""
        n = min(c for c in self.row_counts if c >= len(live))
        if 2 * n <= self.rows:
            self._resize(live + [s for s in range(self.rows) if s not in live][:n - len(live)], n)

    def _resize(self, keep: list[int], n: int) -> None:
        """The device batch becomes rows `keep` (in that order) and, growing, free rows up to n."""
        with self._context():
            if n < self.rows:
                self.cache, self.state = self._take(self.cache, self.state, np.asarray(keep, np.int32))
            else:
                empty = decode.empty_state(n, self.max_stops, self.stop_len, self.mesh)
                self.cache, self.state = self._pad(self.cache, self.state, empty)
        free = n - len(keep)
        self._slot = [self._slot[s] for s in keep] + [None] * free
        self._len = np.concatenate([self._len[keep], np.zeros(free, np.int64)])
        self._out = [self._out[s] for s in keep] + [[] for _ in range(free)]
        self.rows = n

    def step(self) -> bool:
        """Refill free slots, then advance every active slot by one token. False when nothing is left to do."""
        self._fill()
        live = [s for s in range(self.rows) if self._slot[s] is not None]
        if not live:
            return False
        if not self._queue and len(self.row_counts) > 1:
            self._compact(live)
            live = [s for s in range(self.rows) if self._slot[s] is not None]
        longest = int(max(self._len[s] for s in live))
        window = decode.window_for(self.blocks, min(self.max_len, longest + 1))
        with self._context():
            self.cache, self.state, tok, done, overflow = self._step(self.weights, self.cache, self.state,
                                                                     window=window)
        tok, done, overflow = np.asarray(tok), np.asarray(done), np.asarray(overflow)
        if overflow.any():  # check makes this unreachable; never write past a row's cache silently
            raise RuntimeError(f"slots {np.flatnonzero(overflow).tolist()} ran past the cache ({self.max_len})")
        for s in live:
            self._len[s] += 1
            self._advance(s, int(tok[s]), bool(done[s]))
        return True

    def run(self, requests: Sequence[Request] = ()) -> list[list[Completion]]:
        """Submit `requests`, decode until every queued request is done; the completions of all requests run so
        far, in submission order (one list of n per request)."""
        for r in requests:
            self.submit(r)
        while self.step():
            pass
        return [None if r is None else list(r) for r in self._results]

    def pop_finished(self) -> list[tuple[int, list[Completion]]]:
        """(request, its completions) for each request completed since the last call, in order of completion: a
        caller stepping the engine itself can write each result as soon as it exists."""
        done, self._finished = self._finished, []
        return [(rid, list(self._results[rid])) for rid in done]

    def cancel(self, rid: int) -> None:
        """End request `rid` now: its queued samples are dropped and its slots freed (refilled at the next step);
        its unfinished samples complete with finish_reason "cancelled". A finished request is left as it is."""
        if self._results[rid] is None or all(c is not None for c in self._results[rid]):
            return
        self._queue = collections.deque(q for q in self._queue if q[0] != rid)
        self._prefilled.pop(rid, None)
        for slot in range(self.rows):
            if self._slot[slot] is not None and self._slot[slot][0] == rid:
                with self._context():
                    self.state = self._release(self.state, np.int32(slot))
                out = self._out[slot]
                self._results[rid][self._slot[slot][1]] = Completion(out, self.text(rid, out) if self.tokenizer
                                                                     else None, "cancelled")
                self._slot[slot] = None
        for i, c in enumerate(self._results[rid]):
            if c is None:
                self._results[rid][i] = Completion([], "" if self.tokenizer else None, "cancelled")

    def forget(self, rid: int) -> None:
        """Drop a finished or cancelled request's prompt and results (run() then lists it as None)."""
        if self._results[rid] is not None and any(c is None for c in self._results[rid]):
            raise ValueError(f"request {rid} is still running; cancel it first")
        self._requests[rid] = self._results[rid] = None
        self._stop_ids.pop(rid, None)

    def results(self, rid: int) -> list[Completion | None]:
        """Request `rid`'s completions so far (None for a sample still running)."""
        return list(self._results[rid])

    def stop_ids(self, rid: int) -> list[list[int]]:
        """The stop sequences request `rid` is matched against as token suffixes (its ids and encoded strings)."""
        return self._stop_ids[rid]

    def pending(self) -> tuple[int, int]:
        """(busy slots, queued samples)."""
        return sum(s is not None for s in self._slot), len(self._queue)

    # -- ends -----------------------------------------------------------------------------------------------
    def text(self, rid: int, ids: Sequence[int]) -> str:
        """The generated text, decoded after the prompt's last token so a leading space survives."""
        ctx = [int(self._requests[rid].prompt[-1])]
        return self.tokenizer.decode(ctx + list(ids))[len(self.tokenizer.decode(ctx)):]

    def _tail_text(self, rid: int, out: list[int]) -> str:
        """The text of the last few generated tokens, decoded after the token before them: enough to hold any of
        the request's stop strings that ends in the newest token (4 tokens per character, byte-level BPE's
        worst case, and 4 more). This assumes decoding is local within that window (byte-level BPE, SentencePiece);
        a hit is confirmed, and cut, on the whole text."""
        n = 4 * max(len(s) for s in self._requests[rid].stop) + 4
        if len(out) <= n:
            return self.text(rid, out)
        ctx = [out[-n - 1]]
        return self.tokenizer.decode(ctx + out[-n:])[len(self.tokenizer.decode(ctx)):]

    def _advance(self, slot: int, tok: int, done: bool) -> None:
        rid, sample = self._slot[slot]
        r, out = self._requests[rid], self._out[slot]
        eos = done and tok == self.eos_id and not r.ignore_eos
        if not eos:
            out.append(tok)
        # Stop strings: the newest tokens' text is searched each token (not the whole text: that was quadratic in
        # the answer's length), and the whole text only once one shows there, to cut at its first occurrence.
        text, cut = None, -1
        if r.stop and any(s in self._tail_text(rid, out) for s in r.stop):
            text = self.text(rid, out)
            cut = min((i for i in (text.find(s) for s in r.stop) if i >= 0), default=-1)
        suffix = next((s for s in self._stop_ids[rid] if out[-len(s):] == s), None)
        if cut < 0 and not done and suffix is None:
            if self.on_token is not None:
                self.on_token(rid, sample, out, None)
            return
        if text is None and self.tokenizer is not None:
            text = self.text(rid, out)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        elif suffix is not None and not eos:
            reason = "stop"
            if text is not None:
                text = self.text(rid, out[:-len(suffix)])
        else:
            reason = "eos" if eos else "length"
        if not done:  # ended on the host (a stop in the text): free the row on the device too
            with self._context():
                self.state = self._release(self.state, np.int32(slot))
        self._results[rid][sample] = Completion(out, text, reason)
        self._slot[slot] = None
        if all(c is not None for c in self._results[rid]):
            self._finished.append(rid)
        if self.on_token is not None:
            self.on_token(rid, sample, out, self._results[rid][sample])
