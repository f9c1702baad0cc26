"""The rows of the report's benchmark table: one per evaluation folder, and the published TÜLU rows.

An evaluated row is exactly camel_jax.evaluate's own table (evaluate/table.py: the 11 columns, the Average only
when all of them ran, else a partial mean marked as such), so the report never recomputes a score differently from
the command that wrote it. A cell scored on fewer items than its setting has (`--max_examples`) is flagged, since
it is not comparable to the paper's number. The published rows come from a package asset that names its source.
"""
from __future__ import annotations

import json
import os
from importlib import resources

from camel_jax.cli import UsageError
from camel_jax.evaluate import records, registry, table

COLUMNS = tuple(title for title, _ in table.COLUMNS)
PUBLISHED_ASSET = "tulu1_published_results.json"


def _subset(out_dir: str, task: str | None) -> tuple[int, int] | None:
    """(selected, items) of a task run on a subset of its items, else None."""
    path = os.path.join(out_dir, task or "", records.RUN_FILE)
    if not task or not os.path.isfile(path):
        return None
    counts = records.read_json(path).get("counts") or {}
    selected, items = counts.get("selected"), counts.get("items")
    if isinstance(selected, int) and isinstance(items, int) and selected < items:
        return selected, items
    return None


def evaluated_row(out_dir: str) -> dict:
    """The table of one `python -m camel_jax.evaluate --out DIR` folder, named after its checkpoint."""
    run_path = os.path.join(out_dir, records.RUN_FILE)
    if not os.path.isfile(run_path):
        raise UsageError(f"--results {out_dir}: no {records.RUN_FILE}; not an evaluation folder written by "
                         f"python -m camel_jax.evaluate")
    run = records.read_json(run_path)
    checkpoint = str(run.get("checkpoint") or "")
    name = os.path.basename(checkpoint.rstrip("/")) or os.path.basename(os.path.abspath(out_dir))
    t = table.build(out_dir, registry.SETTINGS.values())
    cells = []
    for c in t["columns"]:
        cells.append({"value": c["value"], "status": c["status"], "subset": _subset(out_dir, c["task"])})
    return {"model": name, "source": os.path.abspath(out_dir), "published": False, "cells": cells,
            "average": t["average"], "partial_average": t["partial_average"], "groups_run": t["groups_run"],
            "protocol": run.get("protocol"), "chat_format": run.get("chat_format")}


def evaluated_rows(dirs: list[str]) -> list[dict]:
    """One row per folder; models of the same name get their folder's name beside it."""
    rows = [evaluated_row(d) for d in dirs]
    names = [r["model"] for r in rows]
    for r in rows:
        if names.count(r["model"]) > 1:
            r["model"] = f"{r['model']} ({os.path.basename(r['source'].rstrip('/'))})"
    return rows


def published() -> tuple[list[dict], str]:
    """The published TÜLU rows (same shape as an evaluated row, `published` True) and their source."""
    data = json.loads(resources.files("camel_jax").joinpath("assets", PUBLISHED_ASSET).read_text("utf-8"))
    if tuple(data["columns"]) != COLUMNS:
        raise ValueError(f"{PUBLISHED_ASSET}: columns {data['columns']} are not the table's {list(COLUMNS)}")
    rows = []
    for r in data["rows"]:
        cells = [{"value": v, "status": "ok" if v is not None else "not published", "subset": None}
                 for v in r["values"]]
        rows.append({"model": r["model"], "source": data["source"], "published": True, "cells": cells,
                     "average": r["average"], "partial_average": None, "groups_run": None})
    return rows, data["source"]
