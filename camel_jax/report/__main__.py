"""`python -m camel_jax.report`: one self-contained HTML page of the results, with its charts as PNGs beside it.

  python -m camel_jax.report --results DIR [DIR ...] [--human FILE.sqlite|.jsonl|.csv] --out report.html
      [--annotation first|latest] [--seed N] [--n_resamples N]

DIR: folders written by `python -m camel_jax.evaluate --out DIR`, one table row each, beside the published TÜLU
rows. --human: the study's annotations (the app's database, or an export in open-instruct's schema). A user's
mistake is one `prog: error: ...` line on stderr and exit status 2.
"""
from __future__ import annotations

import sys

from camel_jax import cli

PROG = "python -m camel_jax.report"


def _parser() -> cli.ArgumentParser:
    ap = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", nargs="+", required=True, metavar="DIR", help="evaluation folders")
    ap.add_argument("--human", default=None, metavar="FILE", help="annotations: .sqlite (the app's), .jsonl or .csv")
    ap.add_argument("--out", required=True, metavar="FILE.html", help="the page; PNGs are written beside it")
    ap.add_argument("--annotation", default="first", choices=("first", "latest"),
                    help="which annotation per item counts (first: as open-instruct's analysis)")
    ap.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    ap.add_argument("--n_resamples", type=int, default=9999, help="bootstrap resamples")
    return ap


def _main(args) -> int:
    from camel_jax.report.build import build

    built = build(args.results, args.out, args.human, args.annotation, args.seed, args.n_resamples)
    print(f"{built['html']} ({len(built['rows'])} evaluated models, {len(built['pngs'])} charts)")
    return 0


def main(argv=None) -> int:
    return cli.run(PROG, _main, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
