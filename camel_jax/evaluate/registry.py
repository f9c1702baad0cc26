"""The one task table: every benchmark setting by name, the benchmark groups, and `--tasks` resolution.

The benchmark modules are listed by name in BENCHMARK_MODULES and each must import (a missing one is an error, not
a silently smaller table); each exports SETTINGS (task.py). Their settings are checked against the results table's
columns here, at import, so a module that names a column the table does not have fails loudly.
"""
from __future__ import annotations

import importlib

from camel_jax.cli import UsageError
from camel_jax.evaluate import table
from camel_jax.evaluate.task import Setting

BENCHMARK_MODULES = ("mmlu", "gsm", "bbh", "tydiqa", "humaneval", "alpaca_farm")
GROUPS = table.GROUPS


def _collect(modules=BENCHMARK_MODULES) -> dict[str, Setting]:
    found = {}
    for name in modules:
        module = importlib.import_module(f"camel_jax.evaluate.{name}")
        for s in module.SETTINGS:
            where = f"camel_jax.evaluate.{name}: setting {s.name!r}"
            if s.name in found or s.name in GROUPS and s.name != s.group:
                raise ValueError(f"{where}: the name is already taken")
            if table.COLUMN_GROUP.get(s.column) != s.group:
                raise ValueError(f"{where}: column {s.column!r} of group {s.group!r} is not one of the table's "
                                 f"{[c for c, _ in table.COLUMNS]} with its group")
            found[s.name] = s
    order = [c for c, _ in table.COLUMNS]
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[1].column)))


SETTINGS: dict[str, Setting] = _collect()


def groups() -> dict[str, list[str]]:
    """group -> its registered task names (a group with no module yet maps to [])."""
    return {g: [n for n, s in SETTINGS.items() if s.group == g] for g in GROUPS}


def resolve(spec: str) -> list[Setting]:
    """`all`, or comma-separated task and group names -> settings in table order, each once."""
    names = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if not names:
        raise UsageError("--tasks is empty; give all, task names or groups (see --list)")
    chosen = set()
    by_group = groups()
    for n in names:
        if n == "all":
            chosen |= set(SETTINGS)
        elif n in SETTINGS:
            chosen.add(n)
        elif n in by_group and by_group[n]:
            chosen |= set(by_group[n])
        elif n in by_group:
            raise UsageError(f"--tasks: group {n!r} has no benchmark module in this build yet; available: "
                             f"{', '.join(g for g, t in by_group.items() if t)}")
        else:
            raise UsageError(f"--tasks: unknown task {n!r}; tasks: {', '.join(SETTINGS)}; groups: "
                             f"{', '.join(g for g, t in by_group.items() if t)}; or all")
    return [s for name, s in SETTINGS.items() if name in chosen]


def listing() -> str:
    """What `--list` prints: one line per task, then the groups."""
    lines = [f"{'task':<16} {'group':<12} {'kind':<9} {'chat':<5} column"]
    for s in SETTINGS.values():
        lines.append(f"{s.name:<16} {s.group:<12} {s.kind:<9} {'yes' if s.chat else 'no':<5} {s.column}")
    lines.append("")
    for g, names in groups().items():
        lines.append(f"group {g}: {', '.join(names) if names else '(no module yet)'}")
    return "\n".join(lines)
