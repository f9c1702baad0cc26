"""Batched generation with the KV cache: one prefill of the left-padded prompts, then one token per step inside a
single jitted `lax.while_loop` that stops when every row has produced EOS.

Left padding is handled by the model's one masking rule: the prompt mask is passed as segment ids (pads are
segment 0, never attended) and rotary positions come from `positions_from_mask`, so a padded row computes
exactly what it would alone. Token choice is one function, `select_tokens(logits, rng, sampling)`: greedy when
temperature is 0, else temperature plus nucleus (top-p) sampling; a richer sampler only replaces that function.

CLI: python -m camel_jax.generate --checkpoint CKPT_DIR --prompt "..." [--prompt ...] [--max_new_tokens N] [--no_bos]
[--temperature T --top_k K --top_p P --seed S] [--stop STR] [--ignore_eos]: the prompts go through the
continuous-batching engine (camel_jax.infer.engine), which this static-batch decoder is the reference for in tests.
Batch files: --input prompts.jsonl --output out.jsonl [--chat_format tulu|hf|none] instead of --prompt, resumable
after a kill (camel_jax/infer/batch_file.py). --chat: an interactive multi-turn chat, streamed (infer/chat_cli.py).
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from camel_jax.model.llama import Llama, init_cache, positions_from_mask
from camel_jax.model.config import LlamaConfig

PROMPT_BUCKET = 16  # prompt lengths are padded up to a multiple of this, so few shapes get compiled


@dataclasses.dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy (argmax)
    top_p: float = 1.0


GREEDY = Sampling()


def select_tokens(logits: jax.Array, rng: jax.Array, sampling: Sampling) -> jax.Array:
    """Next token per row from fp32 logits [B, V]."""
    if sampling.temperature <= 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / sampling.temperature
    if sampling.top_p < 1.0:
        # Keep the smallest set of most likely tokens whose probability reaches top_p (the top one always).
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < sampling.top_p
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0, bucket: int = PROMPT_BUCKET
             ) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [B, P], mask [B, P]) with every prompt right-aligned; P is the longest prompt rounded up to `bucket`."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (use BOS for an unconditional start)")
    width = -(-max(len(p) for p in prompts) // bucket) * bucket
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    return tokens, mask


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "sampling"))
def _generate(params: Any, tokens: jax.Array, mask: jax.Array, rng: jax.Array, eos_id: jax.Array, *,
              cfg: LlamaConfig, max_new_tokens: int, sampling: Sampling) -> tuple[jax.Array, jax.Array]:
    b, p = tokens.shape
    model = Llama(cfg, trim_logits=False)  # padded vocabulary columns masked, never chosen (model/vocab.py)
    cache = init_cache(cfg, b, p + max_new_tokens)
    logits, cache = model.apply({"params": params}, tokens, positions=positions_from_mask(mask), segment_ids=mask,
                                cache=cache, cache_index=0)
    rng, key = jax.random.split(rng)
    first = select_tokens(logits[:, -1], key, sampling)
    pos = jnp.sum(mask, axis=-1).astype(jnp.int32)  # the next token's rotary position
    out = jnp.zeros((b, max_new_tokens), jnp.int32)
    done = jnp.zeros((b,), bool)

    def cond(state):
        i, _, _, _, done, _, _ = state
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(state):
        i, cache, tok, pos, done, out, rng = state
        out = out.at[:, i].set(jnp.where(done, eos_id, tok))
        done = done | (tok == eos_id)
        logits, cache = model.apply({"params": params}, tok[:, None], positions=pos[:, None],
                                    segment_ids=jnp.ones((b, 1), jnp.int32), cache=cache, cache_index=p + i)
        rng, key = jax.random.split(rng)
        return i + 1, cache, select_tokens(logits[:, 0], key, sampling), pos + 1, done, out, rng

    state = (jnp.int32(0), cache, first, pos, done, out, rng)
    steps, _, _, _, done, out, _ = jax.lax.while_loop(cond, body, state)
    # A finished row ends at its first EOS (kept); the others ran all `steps`.
    hit = (out == eos_id) & (jnp.arange(max_new_tokens)[None] < steps)
    lengths = jnp.where(hit.any(axis=-1), jnp.argmax(hit, axis=-1) + 1, steps)
    return out, lengths


def generate(params: Any, cfg: LlamaConfig, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             eos_id: int | None = None, sampling: Sampling = GREEDY, seed: int = 0) -> list[list[int]]:
    """The new tokens of each prompt (token ids, no padding), stopping after EOS (kept) or max_new_tokens."""
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    tokens, mask = left_pad(prompts)
    if tokens.shape[1] + max_new_tokens > cfg.max_seq_len:
        longest = max(len(p) for p in prompts)
        if longest + max_new_tokens > cfg.max_seq_len:
            raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                             f"max_seq_len {cfg.max_seq_len}")
        tokens, mask = left_pad(prompts, bucket=1)  # the bucket's extra padding would not fit
    eos = cfg.eos_token_id if eos_id is None else eos_id
    out, lengths = _generate(params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.PRNGKey(seed),
                             jnp.int32(eos), cfg=cfg, max_new_tokens=max_new_tokens, sampling=sampling)
    out, lengths = np.asarray(out), np.asarray(lengths)
    return [out[i, :lengths[i]].tolist() for i in range(len(prompts))]


def greedy_generate(params: Any, cfg: LlamaConfig, prompt_ids_batch: Sequence[Sequence[int]], max_new_tokens: int,
                    eos_id: int | None = None) -> list[list[int]]:
    return generate(params, cfg, prompt_ids_batch, max_new_tokens, eos_id, GREEDY)


def main(argv: list[str] | None = None) -> int:
    from camel_jax import cli

    ap = cli.ArgumentParser(prog="python -m camel_jax.generate", description="Continue prompts with a "
                            "camel_jax checkpoint (converted, or a training output/step folder).")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompt", action="append", help="may be repeated: prompts run as one batch")
    ap.add_argument("--input", help="a jsonl of {\"id\", \"prompt\"} or {\"id\", \"messages\"} lines (instead "
                    "of --prompt); resumable: a rerun skips the ids already in --output")
    ap.add_argument("--output", help="with --input: the jsonl each finished record is appended to")
    ap.add_argument("--chat", action="store_true", help="an interactive multi-turn chat in the terminal (instead "
                    "of --prompt / --input); /reset, /quit")
    ap.add_argument("--chat_format", default="tulu", choices=("tulu", "hf", "none"),
                    help="with --input or --chat: how messages become a prompt (raw \"prompt\" text is used as-is)")
    ap.add_argument("--ignore_eos", action="store_true", help="decode to max_new_tokens (for benchmarks)")
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--no_bos", action="store_true", help="do not prepend BOS to the prompt")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--top_p", type=float, default=1.0)
    ap.add_argument("--top_k", type=int, default=0, help="0 = off")
    ap.add_argument("--stop", action="append", default=[], help="a stop string (may be repeated)")
    ap.add_argument("--slots", type=int, default=8, help="decode slots of the engine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype")
    ap.add_argument("--quantize", default="none", choices=("none", "int8"),
                    help="int8: weight-only, one scale per output channel (camel_jax/infer/quantize.py)")
    args = ap.parse_args(argv)
    if args.chat:
        if args.prompt or args.input or args.output:
            ap.error("--chat takes no --prompt, --input or --output")
        from camel_jax.infer import chat_cli

        return cli.run(ap.prog, chat_cli.run, args, errors=(ValueError,))
    if bool(args.prompt) == bool(args.input):
        ap.error("give --prompt (may be repeated) or --input FILE.jsonl, not both" if args.prompt else
                 "the following arguments are required: --prompt or --input")
    if args.output and not args.input:
        ap.error("--output goes with --input")
    if args.input:
        from camel_jax.infer import batch_file

        return cli.run(ap.prog, batch_file.run, args, errors=(ValueError,))
    return cli.run(ap.prog, _generate_cli, args, errors=(ValueError,))


def _generate_cli(args) -> int:
    from camel_jax import params_io
    from camel_jax.infer.engine import Engine, Request
    from camel_jax.model.tokenizer import load_tokenizer

    tok_dir = params_io.require_tokenizer_dir(args.checkpoint)
    params, cfg = params_io.load_params(args.checkpoint)
    cfg = cfg.replace(dtype=args.dtype)
    tokenizer = load_tokenizer(tok_dir)
    prompts = [tokenizer.encode(p, add_bos=not args.no_bos) for p in args.prompt]
    longest = max(len(p) for p in prompts)
    if longest + args.max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({args.max_new_tokens}) exceeds the model's "
                         f"max_seq_len {cfg.max_seq_len}")
    max_len = min(cfg.max_seq_len, -(-(longest + args.max_new_tokens) // 128) * 128)
    engine = Engine(params, cfg, slots=max(1, min(args.slots, len(prompts))), max_len=max_len, tokenizer=tokenizer,
                    quantize=args.quantize)
    outs = engine.run([Request(p, args.max_new_tokens, args.temperature, args.top_k, args.top_p, seed=args.seed,
                               stop=args.stop, ignore_eos=args.ignore_eos) for p in prompts])
    for prompt, (out,) in zip(args.prompt, outs):
        print(out.text if len(args.prompt) == 1 else f"### {prompt}\n{out.text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
