"""Builds the report: the table rows, every chart as a PNG beside the HTML, then the page (written atomically).

The PNGs are named after the page (`report.html` -> `report_mmlu.png`, `report_acceptance.png`, ...), so two
reports in one folder do not overwrite each other's charts.
"""
from __future__ import annotations

import os

from camel_jax.cli import UsageError
from camel_jax.evaluate import table
from camel_jax.report import charts, page, results

HUMAN_DB = (".sqlite", ".sqlite3", ".db")


def read_human(path: str) -> list:
    """The study's annotations: from the app's SQLite database, or a .jsonl/.csv in open-instruct's schema."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise UsageError(f"--human {path}: no such file")
    if ext in HUMAN_DB:
        try:
            from camel_jax.human_eval.db import Store
        except ImportError as err:
            raise UsageError(f"--human {path}: this build cannot read the app's database ({err}); export it to "
                             f".jsonl with python -m camel_jax.human_eval export") from None
        return Store(path).annotations()
    if ext in (".jsonl", ".csv"):
        from camel_jax.human_eval.records import read_annotations

        return read_annotations(path)
    raise UsageError(f"--human {path}: expected the app's .sqlite database or a .jsonl/.csv of annotations")


def build(results_dirs: list[str], out: str, human: str | None = None, annotation: str = "first", seed: int = 0,
          n_resamples: int = 9999) -> dict:
    """Write `out` and its PNGs; returns {"html", "pngs", "rows"}."""
    if not out.lower().endswith(".html"):
        raise UsageError(f"--out {out}: expected a file name ending in .html")
    for d in results_dirs:
        if not os.path.isdir(d):
            raise UsageError(f"--results {d}: no such folder")
    rows = results.evaluated_rows(results_dirs)
    annotations = None
    if human is not None:  # every input checked before anything is drawn
        from camel_jax.human_eval import stats

        stats.check(annotation, n_resamples)
        annotations = read_human(human)
    published, source = results.published()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.abspath(out))[0]
    bench = [charts.benchmark_chart(rows + published, g, f"{stem}_{g}.png") for g in table.GROUPS]
    human_part = None
    if annotations is not None:
        summary = stats.summarize(annotations, annotation, seed=seed, n_resamples=n_resamples)
        figures = []
        if summary["pairs"]:
            figures = [charts.acceptance_chart(summary, f"{stem}_acceptance.png"),
                       charts.preference_chart(summary, f"{stem}_preference.png")]
        human_part = {"source": human, "summary": summary, "figures": figures}
    text = page.render(rows + published, source, bench, results_dirs, human_part)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    return {"html": out, "pngs": bench + (human_part["figures"] if human_part else []), "rows": rows}
