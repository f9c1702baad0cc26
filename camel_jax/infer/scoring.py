"""Log-likelihood scoring: continuations given a context, and the next-token distribution at a prompt's end.

What evaluation needs (MMLU, multiple choice, perplexity, `/v1/completions` with echo + logprobs), done the way
lm-evaluation-harness does it (eval_anchors.md §1.1) so scores are comparable, and batch-invariant:

* **Pairs** are tokenized as the harness does: the context's trailing whitespace moves to the continuation;
  context+continuation is encoded once and split at len(encode(context)), so the continuation's first token is the
  one the model would see in running text; an empty context becomes BOS.
* **One forward per shared context**: requests whose inputs (context+continuation minus its last token, left-
  truncated to the model's length) are equal share one row: MMLU's " A"…" D" are one forward per question. A
  continuation is read off the shared row's positions, its last token from the row's final log-probs.
* **Sorted by length** (longest first, as the harness) and **packed**: inputs up to PACK_WIDTH tokens share rows
  (best-fit decreasing, each its own segment with positions from 0, attending only within itself), a longer one
  has a row of its own; rows are right-padded to a few fixed widths (powers of two, `batch_size` rows, empty rows
  padded), so only a handful of programs ever compile and padding stays small (500 MMLU 0-shot prompts: 1.5x their
  tokens computed with one prompt per power-of-two row, ~1.05x packed); results come back in the order asked.
* **The real vocabulary only**: the model runs with trim_logits=False, so padded vocabulary columns come masked
  (model/vocab.py) and vanish from log-sum-exp and argmax, with no slice of a vocab-sharded tensor on device.
* **Batch invariance**: an input's values depend only on its own tokens (its own segment; padding is segment 0,
  never attended); what changes with batch size, bucket and row-mates is only XLA's float summation order
  (tests/test_infer_scoring.py measures it).

Device memory per forward: fp32 logits of batch_size × row width × padded_vocab (the width is the longest input's
bucket, or PACK_WIDTH when packing fills it; next-token scoring only PACK_SEGMENTS positions a row); choose
batch_size accordingly.
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from camel_jax.model.config import LlamaConfig
from camel_jax.model.layers import project
from camel_jax.model.llama import Llama, head_kernel, param_shardings
from camel_jax.model.mesh import mesh_str
from camel_jax.model.partition import batch_sharding, constrain, data_shards
from camel_jax.model.vocab import mask_padded_logits

MIN_BUCKET = 16
PACK_WIDTH = 512  # inputs up to this long share rows, each its own segment; a longer one gets a row of its bucket
PACK_SEGMENTS = 16  # inputs per row at most: the head reads [batch_size, PACK_SEGMENTS] positions per forward
TOP = 20  # alternatives `sequence_logprobs` returns per position (OpenAI's `top_logprobs` maximum on chat)


@dataclasses.dataclass(frozen=True)
class Loglikelihood:
    logprob: float  # sum of the continuation tokens' log-probabilities
    num_tokens: int
    is_greedy: bool  # every continuation token is the argmax given what precedes it
    token_logprobs: tuple[float, ...]


def encode_pair(tokenizer, context: str, continuation: str, add_bos: bool = True) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness's `_encode_pair`, BOS first when asked (and
    always for an empty context, which must predict the first token from something)."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    context = stripped
    bos = [tokenizer.bos_id] if add_bos or not context else []
    if not context:
        return bos, tokenizer.encode(continuation)
    whole = tokenizer.encode(context + continuation)
    n = len(tokenizer.encode(context))
    return bos + whole[:n], whole[n:]


def buckets(max_len: int) -> tuple[int, ...]:
    """Powers of two from MIN_BUCKET, the last one max_len itself."""
    out, b = [], MIN_BUCKET
    while b < max_len:
        out.append(b)
        b *= 2
    return tuple(out) + (max_len,)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _forward(params: Any, tokens: jax.Array, segments: jax.Array, positions: jax.Array, ends: jax.Array, *,
             cfg: LlamaConfig):
    """Packed rows -> (log-prob of each next token [B, T], whether it is the argmax [B, T], log-probs at each
    segment's last position `ends` [B, K] -> [B, K, Vp]; padded vocabulary columns are ~-1e30 there)."""
    logits, _ = Llama(cfg, trim_logits=False).apply({"params": params}, tokens, positions=positions,
                                                    segment_ids=segments)
    logp = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    nxt = jnp.concatenate([tokens[:, 1:], tokens[:, -1:]], axis=1)
    lp = jnp.take_along_axis(logp, nxt[..., None], axis=-1)[..., 0]
    greedy = jnp.argmax(logits, axis=-1) == nxt
    return lp, greedy, jnp.take_along_axis(logp, ends[..., None], axis=1)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _forward_top(params: Any, tokens: jax.Array, segments: jax.Array, positions: jax.Array, ends: jax.Array, *,
                 cfg: LlamaConfig):
    """Packed rows -> (log-prob of each next token [B, T], the TOP most likely next tokens' log-probs and ids
    [B, T, TOP]); the same log-softmax as `_forward` (`ends` unused: every position is returned)."""
    del ends
    logits, _ = Llama(cfg, trim_logits=False).apply({"params": params}, tokens, positions=positions,
                                                    segment_ids=segments)
    logp = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    nxt = jnp.concatenate([tokens[:, 1:], tokens[:, -1:]], axis=1)
    top_lp, top_id = jax.lax.top_k(logp, TOP)
    return jnp.take_along_axis(logp, nxt[..., None], axis=-1)[..., 0], top_lp, top_id


@functools.partial(jax.jit, static_argnames=("cfg",))
def _forward_last(params: Any, tokens: jax.Array, segments: jax.Array, positions: jax.Array, ends: jax.Array, *,
                  cfg: LlamaConfig):
    """Packed rows -> log-probs at each segment's last position `ends` [B, K] -> [B, K, Vp], only those positions
    through the head: the next-token case (MMLU) skips the [B, T, V] logits, which at SmolLM2's 49k vocabulary
    cost as much as the rest of the forward on CPU."""
    x, _ = Llama(cfg).apply({"params": params}, tokens, positions=positions, segment_ids=segments, head=False)
    x = jnp.take_along_axis(x, ends[..., None], axis=1)
    logits = constrain(project(x, head_kernel(params, cfg), jnp.dtype(cfg.dtype)).astype(jnp.float32),
                       ("batch", None, "act_vocab"))
    logits = mask_padded_logits(logits, cfg.vocab_size)
    return logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)


def pack(lengths: Sequence[int], width: int, max_segments: int) -> list[list[int]]:
    """Best-fit decreasing: indices of `lengths` (sorted longest first) into rows of `width` tokens holding at most
    `max_segments` each; each goes to the open row it leaves the least room in. Deterministic."""
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (room left, row) of the rows still open, sorted
    for i, n in enumerate(lengths):
        if n > width:
            raise ValueError(f"{n} tokens do not fit a row of {width}")
        k = bisect.bisect_left(room, (n, -1))
        if k < len(room):
            left, r = room.pop(k)
        else:
            left, r = width, len(rows)
            rows.append([])
        rows[r].append(i)
        if left - n > 0 and len(rows[r]) < max_segments:
            bisect.insort(room, (left - n, r))
    return rows


class Scorer:
    """Scores token-id requests with one model. batch_size: rows per forward (fixed, so shapes do not vary).
    mesh: parameters sharded by their logical names (`param_shardings`, training's table: mp splits heads, the
    FFN and the vocabulary), rows split over dp×fsdp (`batch_sharding`); batch_size must divide by dp×fsdp."""

    def __init__(self, params: Any, cfg: LlamaConfig, batch_size: int = 8, max_len: int | None = None,
                 mesh: jax.sharding.Mesh | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.mesh, self._rows = mesh, None
        if mesh is not None:
            if batch_size % data_shards(mesh):
                raise ValueError(f"batch_size {batch_size} does not split over the mesh's {data_shards(mesh)} "
                                 f"data shards ({mesh_str(mesh)})")
            params = jax.device_put(params, param_shardings(cfg, mesh))
            self._rows = batch_sharding(mesh, 2)
        self.params, self.cfg, self.batch_size = params, cfg, int(batch_size)
        self.max_len = int(max_len or cfg.max_seq_len)
        self.buckets = buckets(self.max_len)
        self.forwards = 0  # inputs actually computed, each once however many requests share it (tests count with it)

    def _bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def sequence_logprobs(self, sequences: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per id sequence (at most max_len ids, no truncation): the log-prob of every token after the first given
        the ones before it [n-1], and at each of those positions the TOP most likely tokens' log-probs and ids
        [n-1, TOP]: what `/v1/completions` returns for echo + logprobs."""
        seqs = [tuple(int(t) for t in s) for s in sequences]
        for k, s in enumerate(seqs):
            if not 0 < len(s) <= self.max_len:
                raise ValueError(f"sequence {k}: {len(s)} tokens; expected 1 to {self.max_len}")
        got = {}
        for (lp, top_lp, top_id), starts in self._packed(seqs, _forward_top):
            for x, r, _, at in starts:
                end = at + len(x) - 1
                got[x] = (lp[r, at:end], top_lp[r, at:end], top_id[r, at:end])
        return [got[x] for x in seqs]

    def _width(self, lengths: Sequence[int]) -> int:
        """The row width of inputs no longer than PACK_WIDTH, longest first: their longest one's bucket, or wider
        (up to PACK_WIDTH) while there are tokens enough to fill a forward's rows."""
        fill = -(-sum(lengths) // self.batch_size)
        return max(self._bucket(lengths[0]), min(self._bucket(min(fill, self.max_len)), PACK_WIDTH))

    def _packed(self, inputs: Sequence[tuple[int, ...]], fn):
        """The unique inputs, longest first, packed (`pack`): several to a row, each its own segment with positions
        from 0, so a segment attends only within itself and its values are those it has alone up to XLA's float
        summation order; rows padded with segment 0. Yields, per forward of `fn`, its outputs on the host and
        (input, row, segment, offset in the row) of each input in it."""
        order = sorted(set(inputs), key=lambda x: (-len(x), x))
        short = [x for x in order if len(x) <= PACK_WIDTH]
        rows = [(self._bucket(len(x)), [x]) for x in order[:len(order) - len(short)]]  # each alone, its bucket
        if short:
            width = self._width([len(x) for x in short])
            rows += [(width, [short[i] for i in row]) for row in pack([len(x) for x in short], width, PACK_SEGMENTS)]
        for i in range(0, len(rows), self.batch_size):
            width = max(w for w, _ in rows[i:i + self.batch_size])  # a few shapes: the long buckets and one width
            tokens, segments, positions = (np.zeros((self.batch_size, width), np.int32) for _ in range(3))
            ends = np.zeros((self.batch_size, PACK_SEGMENTS), np.int32)
            starts = []
            for r, (_, row) in enumerate(rows[i:i + self.batch_size]):
                at = 0
                for k, x in enumerate(row):
                    tokens[r, at:at + len(x)], segments[r, at:at + len(x)] = x, k + 1
                    positions[r, at:at + len(x)] = np.arange(len(x))
                    ends[r, k] = at + len(x) - 1
                    starts.append((x, r, k, at))
                    at += len(x)
            arrays = (tokens, segments, positions, ends)
            if self.mesh is None:
                result = fn(self.params, *arrays, cfg=self.cfg)
            else:
                with jax.set_mesh(self.mesh):
                    result = fn(self.params, *(jax.device_put(a, self._rows) for a in arrays), cfg=self.cfg)
            self.forwards += len(starts)
            yield jax.device_get(result), starts

    def _run(self, inputs: Sequence[tuple[int, ...]], last_only: bool = False) -> dict[tuple[int, ...], tuple]:
        """Unique inputs -> (next-token log-probs [n], greedy flags [n], final log-probs [V]) each; last_only: the
        final log-probs alone (None for the others)."""
        out = {}
        for result, starts in self._packed(inputs, _forward_last if last_only else _forward):
            lp, greedy, final = (None, None, result) if last_only else result
            for x, r, k, at in starts:
                out[x] = (None, None, final[r, k, :self.cfg.vocab_size]) if last_only else \
                    (lp[r, at:at + len(x)], greedy[r, at:at + len(x)], final[r, k, :self.cfg.vocab_size])
        return out

    def _input(self, ids: Sequence[int]) -> tuple[int, ...]:
        ids = tuple(int(t) for t in ids)
        if not ids:
            raise ValueError("a request needs at least one token (BOS for an empty context)")
        return ids[-self.max_len:]  # left truncation, as the harness

    def loglikelihood(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[Loglikelihood]:
        """(context ids, continuation ids) pairs -> results in the order given. The context must be non-empty
        (start it with BOS) and the continuation too."""
        rows = []
        for k, (ctx, cont) in enumerate(requests):
            cont = [int(t) for t in cont]
            if not cont or not len(ctx):
                raise ValueError(f"request {k}: context and continuation must both be non-empty token lists")
            rows.append((self._input(list(ctx) + cont[:-1]), cont))
        got = self._run([x for x, _ in rows])
        results = []
        for x, cont in rows:
            lp, greedy, final = got[x]
            n = min(len(cont), len(x))  # a continuation longer than the window keeps its last tokens
            tok = [float(v) for v in lp[len(x) - n:len(x) - 1]] + [float(final[cont[-1]])]
            is_greedy = bool(np.all(greedy[len(x) - n:len(x) - 1])) and int(np.argmax(final)) == cont[-1]
            results.append(Loglikelihood(float(np.sum(np.asarray(tok, np.float64))), n, is_greedy, tuple(tok)))
        return results

    def next_token_logprobs(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """Log-probabilities of the next token after each prompt, [N, vocab_size] fp32, in the order given."""
        inputs = [self._input(p) for p in prompts]
        got = self._run(inputs, last_only=True)
        return np.stack([got[x][2] for x in inputs]) if inputs else np.zeros((0, self.cfg.vocab_size), np.float32)

    def loglikelihood_text(self, tokenizer, pairs: Sequence[tuple[str, str]], add_bos: bool = True
                           ) -> list[Loglikelihood]:
        """(context, continuation) strings, tokenized as lm-evaluation-harness does (`encode_pair`)."""
        return self.loglikelihood([encode_pair(tokenizer, c, x, add_bos) for c, x in pairs])
