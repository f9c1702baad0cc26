"""`python -m camel_jax.convert {import-hf,export-hf,import-llama2c} ...`; see camel_jax/convert/__init__.py."""
from __future__ import annotations

import sys

from camel_jax import cli

PROG = "python -m camel_jax.convert"


def main(argv: list[str] | None = None) -> int:
    ap = cli.ArgumentParser(prog=PROG, description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import-hf", help="Hugging Face LLaMA folder -> camel_jax checkpoint")
    p.add_argument("hf_dir")
    p.add_argument("ckpt_dir")
    p.add_argument("--param_dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="dtype the parameters are stored in (float32: the fp32 master weights training uses)")
    p.add_argument("--gguf_file", default=None,
                   help="a GGUF file inside hf_dir: dequantized through transformers, then imported (convert/gguf.py)")
    p = sub.add_parser("export-hf", help="camel_jax checkpoint (converted or training) -> Hugging Face folder")
    p.add_argument("ckpt_dir")
    p.add_argument("hf_dir")
    p.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"),
                   help="dtype of the written tensors (default: as stored, float32 for converted checkpoints)")
    p.add_argument("--max_shard_size", default="5GB")
    p.add_argument("--chat_template", default="auto", choices=("auto", "tulu", "keep"),
                   help="the tokenizer's chat_template: tulu (the format camel_jax trains), keep (the checkpoint's); "
                        "auto: tulu for a training run's checkpoint, keep for a converted one")
    p = sub.add_parser("import-llama2c", help="llama2.c model.bin + tokenizer.bin -> camel_jax checkpoint")
    p.add_argument("model_bin")
    p.add_argument("tokenizer_bin")
    p.add_argument("ckpt_dir")
    args = ap.parse_args(argv)
    return cli.run(f"{PROG} {args.command}", _convert, args, errors=(ValueError,))


def _convert(args) -> int:
    if args.command == "import-hf":
        from camel_jax.params_io import tokenizer_dir

        if args.gguf_file:
            from camel_jax.convert.gguf import import_gguf

            cfg = import_gguf(args.hf_dir, args.gguf_file, args.ckpt_dir, param_dtype=args.param_dtype)
        else:
            from camel_jax.convert.hf import import_hf

            cfg = import_hf(args.hf_dir, args.ckpt_dir, param_dtype=args.param_dtype)
        print(f"wrote {args.ckpt_dir}: {cfg.num_params():,} parameters, {cfg.num_layers} layers")
        if tokenizer_dir(args.ckpt_dir) is None:
            print(f"warning: {args.hf_dir} has no tokenizer files; {args.ckpt_dir}/tokenizer is missing",
                  file=sys.stderr)
    elif args.command == "export-hf":
        from camel_jax.convert.hf import export_hf

        files = export_hf(args.ckpt_dir, args.hf_dir, dtype=args.dtype, max_shard_size=args.max_shard_size,
                          chat_template=args.chat_template)
        print(f"wrote {args.hf_dir}: {', '.join(files)}")
        if "tokenizer_config.json" not in files and "tokenizer.json" not in files:
            print(f"warning: {args.ckpt_dir} has no tokenizer; {args.hf_dir} holds none", file=sys.stderr)
    else:
        from camel_jax.convert.llama2c import import_llama2c

        cfg = import_llama2c(args.model_bin, args.tokenizer_bin, args.ckpt_dir)
        print(f"wrote {args.ckpt_dir}: {cfg.num_params():,} parameters, {cfg.num_layers} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
