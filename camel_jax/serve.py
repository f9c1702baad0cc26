"""python -m camel_jax.serve --checkpoint C [--host 127.0.0.1] [--port 8000] [--slots N] [--max_len L]
[--chat_format tulu|hf|none] [--model_name NAME] [--dtype float32|bfloat16]: an OpenAI-compatible server
(camel_jax/infer/server.py) over the continuous-batching engine, on uvicorn. Binds to localhost unless told
otherwise: the API has no authentication.
"""
from __future__ import annotations

import os
import sys


def build_app(args):
    """The FastAPI app for the parsed flags (loads the checkpoint, its tokenizer, the engine and a scorer)."""
    from camel_jax import params_io
    from camel_jax.infer.engine import Engine
    from camel_jax.infer.scoring import Scorer
    from camel_jax.infer.server import create_app
    from camel_jax.model.tokenizer import load_tokenizer

    tok_dir = params_io.require_tokenizer_dir(args.checkpoint)
    params, cfg = params_io.load_params(args.checkpoint)
    cfg = cfg.replace(dtype=args.dtype)
    max_len = min(cfg.max_seq_len, args.max_len or cfg.max_seq_len)
    tokenizer = load_tokenizer(tok_dir)
    if args.chat_format == "hf":
        from camel_jax.infer.chat import encode_prompt

        encode_prompt([{"role": "user", "content": "hi"}], "hf", tokenizer)  # no template: say so now
    engine = Engine(params, cfg, slots=args.slots, max_len=max_len, tokenizer=tokenizer)
    name = args.model_name or os.path.basename(os.path.normpath(params_io.checkpoint_root(args.checkpoint)))
    return create_app(engine, model_name=name, chat_format=args.chat_format,
                      scorer=Scorer(params, cfg, batch_size=1, max_len=max_len))


def _serve(args) -> int:
    import uvicorn

    app = build_app(args)
    print(f"serving {app.state.service.model_name!r} on http://{args.host}:{args.port}/v1 "
          f"({args.slots} slots, max_len {app.state.service.engine.max_len})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    from camel_jax import cli

    ap = cli.ArgumentParser(prog="python -m camel_jax.serve", description="An OpenAI-compatible HTTP server "
                            "(/v1/chat/completions, /v1/completions, /v1/models, /health) for a camel_jax checkpoint.")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--slots", type=int, default=8, help="decode slots the concurrent requests share")
    ap.add_argument("--max_len", type=int, default=2048, help="cache slots per row: prompt + answer (at most the "
                    "model's max_seq_len)")
    ap.add_argument("--chat_format", default="tulu", choices=("tulu", "hf", "none"))
    ap.add_argument("--model_name", help="the name clients ask for (default: the checkpoint folder's name)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype")
    ap.add_argument("--log_level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    args = ap.parse_args(argv)
    if args.slots < 1 or args.max_len < 2:
        ap.error("--slots must be >= 1 and --max_len >= 2")
    if not 0 <= args.port < 65536:
        ap.error(f"--port {args.port}: not a port number")
    return cli.run(ap.prog, _serve, args, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
