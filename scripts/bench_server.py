"""Serving overhead: 32 concurrent chat requests from the `openai` client against camel_jax's OpenAI server, against
the same requests through the engine offline (same engine, same slots), in one process run.

Both sides decode the same greedy answers (checked: the server's texts equal the offline ones), so the work is the
same; tokens/s counts completion tokens. The server runs on uvicorn in a thread of this process, the clients on
threads too, so the ratio includes HTTP, JSON, the asyncio loop and the driver thread's hand-offs (and their share of
the GIL). Each side is warmed up first (compiles), then timed `--reps` times in turn; medians are printed.

    python scripts/bench_server.py [--checkpoint C] [--requests 32] [--slots 8] [--max_tokens 64] [--reps 3]

Default model: SmolLM2-135M-Instruct converted from ../shared/data/smollm2 (once, into --cache) when present, else
stories260K (bundled); chat format: the tokenizer's own template (hf) when it has one, else tulu.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import threading
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("CAMEL_JAX_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
GGUF = os.path.join(SHARED, "data", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
TOPICS = ["the moon", "bread", "rivers", "chess", "volcanoes", "bees", "glass", "trains", "rain", "maps", "salt",
          "owls", "clocks", "copper", "tea", "kites"]


def checkpoint(args) -> str:
    if args.checkpoint:
        return args.checkpoint
    if os.path.isfile(GGUF):
        ckpt = os.path.join(args.cache, "smollm2")
        if not os.path.isdir(ckpt):
            from camel_jax.convert.gguf import import_gguf

            print(f"converting {GGUF} -> {ckpt} (once)", file=sys.stderr)
            import_gguf(os.path.dirname(GGUF), os.path.basename(GGUF), ckpt)
        return ckpt
    ckpt = os.path.join(args.cache, "stories260k")
    if not os.path.isdir(ckpt):
        from camel_jax.convert.llama2c import import_llama2c

        assets = os.path.join(REPO, "camel_jax", "assets")
        import_llama2c(os.path.join(assets, "stories260K.bin"), os.path.join(assets, "tok512.bin"), ckpt)
    return ckpt


def conversations(n: int) -> list[list[dict]]:
    asks = ["Tell me one fact about {}.", "Write two sentences about {}.", "What is {} made of?",
            "Give me a short poem about {}."]
    return [[{"role": "user", "content": asks[i % len(asks)].format(TOPICS[i % len(TOPICS)])}] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--cache", default="/tmp/camel_jax_bench")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--max_tokens", type=int, default=64)
    ap.add_argument("--max_len", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import jax
    import openai
    import uvicorn

    from camel_jax import params_io
    from camel_jax.infer.chat import encode_prompt
    from camel_jax.infer.engine import Engine, Request
    from camel_jax.infer.server import create_app
    from camel_jax.model.tokenizer import load_tokenizer

    ckpt = checkpoint(args)
    params, cfg = params_io.load_params(ckpt)
    params, cfg = jax.device_put(params), cfg.replace(dtype="float32")
    tok = load_tokenizer(params_io.tokenizer_dir(ckpt))
    fmt = "hf" if getattr(getattr(tok, "_hf", None), "chat_template", None) else "tulu"
    convs = conversations(args.requests)
    prompts = [encode_prompt(c, fmt, tok) for c in convs]
    engine = Engine(params, cfg, slots=args.slots, max_len=min(cfg.max_seq_len, args.max_len), tokenizer=tok)

    def offline():
        start = time.perf_counter()
        out = engine.run([Request(p, args.max_tokens) for p in prompts])[-len(prompts):]
        took = time.perf_counter() - start
        return took, [o[0].text for o in out], sum(len(o[0].tokens) for o in out)

    def served():
        """Start a server on the engine, time the concurrent clients, stop it (the engine is then free again)."""
        server = uvicorn.Server(uvicorn.Config(create_app(engine, model_name="bench", chat_format=fmt),
                                               host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)

        def ask(conv):
            r = client.chat.completions.create(model="bench", messages=conv, max_tokens=args.max_tokens,
                                               temperature=0)
            return r.choices[0].message.content, r.usage.completion_tokens

        try:
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(len(convs)) as pool:
                got = list(pool.map(ask, convs))
            took = time.perf_counter() - start
        finally:
            server.should_exit = True
            thread.join()
        return took, [g[0] for g in got], sum(g[1] for g in got)

    offline()  # warm-up: compiles every prefill bucket and step window these requests need
    served()  # and the HTTP path's imports and first requests
    results, texts = {"offline": [], "server": []}, {}
    for rep in range(args.reps):  # in turn, so the shared machine's load hits both sides alike
        took, texts["offline"], tokens = offline()
        results["offline"].append(tokens / took)
        took_s, texts["server"], tokens_s = served()
        results["server"].append(tokens_s / took_s)
        print(f"rep {rep}: offline {results['offline'][-1]:.1f} tok/s ({tokens} tokens in {took:.1f}s), server "
              f"{results['server'][-1]:.1f} tok/s ({tokens_s} tokens in {took_s:.1f}s)", file=sys.stderr, flush=True)
    same = sum(a == b for a, b in zip(texts["offline"], texts["server"]))
    off, srv = statistics.median(results["offline"]), statistics.median(results["server"])
    print(f"{ckpt}, fp32, {len(convs)} chat requests ({fmt} format), max_tokens {args.max_tokens}, greedy, "
          f"{args.slots} slots")
    print(f"answered: {len(texts['server'])}/{len(convs)}; identical to offline: {same}/{len(convs)}")
    print(f"engine offline: {off:.1f} tok/s   server (openai client, {len(convs)} concurrent): {srv:.1f} tok/s   "
          f"ratio {srv / off:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
