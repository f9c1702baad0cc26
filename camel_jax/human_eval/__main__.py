"""`python -m camel_jax.human_eval serve | import | export | stats`: run the study, move its annotations, count them.

  serve  --db F.sqlite --pairs PAIRS.jsonl [--port 8080] [--host 127.0.0.1] [--overlap 0.2] [--batch 20]
         (or --pairs MODEL_A=out_a.jsonl --pairs MODEL_B=out_b.jsonl [--prompts generate_input.jsonl])
  import --db F.sqlite ANNOTATIONS.jsonl|csv [--keep_stored_text]   (open-instruct's record schema, records.py)
  export --db F.sqlite --out F.jsonl|csv          (one record per annotator and pair: their latest answer)
  stats  --db F.sqlite [--annotation first|latest] [--json]

Mistakes end in one `human_eval <command>: error: ...` line and exit status 2 (camel_jax/cli.py).
"""
from __future__ import annotations

import json
import os
import sys

from camel_jax import cli


def _store(path: str, create: bool):
    from camel_jax.human_eval.db import Store

    if not create and not os.path.isfile(path):
        raise cli.UsageError(f"--db {path}: no such file")
    return Store(path)


def _check_address(host: str, port: int) -> None:
    """A taken port or unknown host as one line now, not uvicorn's log and exit 1 after the pairs are loaded."""
    import socket

    if not 0 < port < 65536:
        raise cli.UsageError(f"--port {port}: expected 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(infos[0][4])
    except OSError as e:
        raise cli.UsageError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None


def cmd_serve(args) -> int:
    from camel_jax.human_eval.app import serve
    from camel_jax.human_eval.pairs import load_pairs

    if not 0.0 <= args.overlap <= 1.0:
        raise cli.UsageError(f"--overlap {args.overlap}: expected a share between 0 and 1")
    if args.batch < 1:
        raise cli.UsageError(f"--batch {args.batch}: expected at least 1")
    _check_address(args.host, args.port)
    pairs = load_pairs(args.pairs, args.prompts) if args.pairs else None  # all checked before the db is touched
    store = _store(args.db, create=True)
    new = store.add_pairs(pairs) if pairs else 0
    if store.count_pairs() == 0:
        raise cli.UsageError(f"--db {args.db} holds no pairs yet; give --pairs")
    store.set_overlap(args.overlap)
    print(f"human_eval: {store.count_pairs()} pairs in {args.db} ({new} new), overlap {args.overlap}; serving "
          f"on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"human_eval: warning: --host {args.host} lets anyone who can reach it sign in under any name (there "
              f"are no passwords) over plain HTTP; put it behind an authenticating proxy", file=sys.stderr)
    serve(store, args.host, args.port, args.batch)
    return 0


def cmd_import(args) -> int:
    from camel_jax.human_eval.records import read_annotations

    annotations = read_annotations(args.annotations)  # the whole file is checked before anything is written
    store = _store(args.db, create=True)
    differing = store.differing_text(annotations) if args.keep_stored_text else []
    added = store.import_annotations(annotations, keep_stored_text=args.keep_stored_text)
    print(f"imported {len(annotations)} annotations from {args.annotations} into {args.db} ({added} new "
          f"submissions in the log)")
    if differing:
        print(f"{len(differing)} of them had other completions than the stored pairs; the stored text was kept "
              f"(first: {differing[0].evaluator!r} on {differing[0].instance_id!r} at {differing[0].timestamp})")
    return 0


def cmd_export(args) -> int:
    from camel_jax.human_eval.records import write_annotations

    annotations = _store(args.db, create=False).annotations()
    write_annotations(args.out, annotations)
    print(f"wrote {len(annotations)} annotations to {args.out}")
    return 0


def cmd_stats(args) -> int:
    try:
        from camel_jax.human_eval import stats
    except ModuleNotFoundError as e:  # only its absence is the user's problem; its own failures keep a traceback
        if e.name != "camel_jax.human_eval.stats":
            raise
        raise cli.UsageError("camel_jax.human_eval.stats is not installed in this checkout") from None
    annotations = _store(args.db, create=False).annotations()
    if not annotations:
        raise cli.UsageError(f"--db {args.db}: no annotations yet")
    summary = stats.summarize(annotations, annotation=args.annotation)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else stats.render_text(summary))
    return 0


def parser() -> cli.ArgumentParser:
    ap = cli.ArgumentParser(prog="human_eval", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    s = sub.add_parser("serve", help="run the annotators' web app")
    s.add_argument("--db", required=True, help="the study's SQLite file (created on first use)")
    s.add_argument("--pairs", action="append", help="an open-instruct comparison jsonl (id, prompt, completions), or "
                   "MODEL=FILE twice: two models' generate/evaluate outputs on the same prompts; optional when "
                   "--db already holds pairs")
    s.add_argument("--prompts", help="with MODEL=FILE generate outputs: their --input jsonl (the prompts)")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--overlap", type=float, default=0.2, help="share of pairs annotated by two people (default 0.2)")
    s.add_argument("--batch", type=int, default=20, help="unanswered items an annotator holds at a time")
    s.set_defaults(fn=cmd_serve)
    i = sub.add_parser("import", help="add annotations from a .jsonl or .csv file (open-instruct's schema)")
    i.add_argument("--db", required=True)
    i.add_argument("annotations", help="ANNOTATIONS.jsonl or .csv")
    i.add_argument("--keep_stored_text", action="store_true", help="accept records whose completions differ from "
                   "the pairs already in --db (e.g. spreadsheet-mangled text) and keep the stored text")
    i.set_defaults(fn=cmd_import)
    e = sub.add_parser("export", help="write every annotator's latest answer per pair as .jsonl or .csv")
    e.add_argument("--db", required=True)
    e.add_argument("--out", required=True, help="F.jsonl or F.csv")
    e.set_defaults(fn=cmd_export)
    t = sub.add_parser("stats", help="acceptance, preference and agreement per model pair")
    t.add_argument("--db", required=True)
    t.add_argument("--annotation", choices=("first", "latest"), default="first",
                   help="per item: its earliest annotator's latest answer (open-instruct's analysis), or the latest")
    t.add_argument("--json", action="store_true", help="the summary as JSON")
    t.set_defaults(fn=cmd_stats)
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    return cli.run(f"human_eval {args.command}", args.fn, args)


if __name__ == "__main__":
    sys.exit(main())
