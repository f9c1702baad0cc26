"""The report's charts as PNG files: a grouped bar chart per benchmark, and the human study's acceptance and
preference charts as stacked bars, as the paper draws them.

matplotlib's object API (Figure + its Agg canvas, no pyplot): no display, no global state, nothing downloaded.
Text from the data (model names) goes through `label`, since a `$` would otherwise start matplotlib's mathtext.
"""
from __future__ import annotations

import warnings

from camel_jax.evaluate import table

EVALUATED, PUBLISHED = "#3b6fb6", "#b0b0b0"
# clearly better … clearly worse, from the pair's first model's side (stats.SCALE)
PREFERENCE_COLOURS = ("#1f5f99", "#7fa8d1", "#d9d9d9", "#e8a87c", "#c0504d")
GROUP_TITLES = {"mmlu": "MMLU", "gsm": "GSM8K", "bbh": "BBH", "tydiqa": "TyDi QA", "codex": "Codex-Eval (HumanEval)",
                "alpaca_farm": "AlpacaFarm"}


def label(text: str, limit: int = 40) -> str:
    """A data string as literal chart text: `$` escaped (no mathtext), long names shortened."""
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a glyph DejaVu lacks is drawn as a box, not an error
        fig.savefig(path, format="png")
    return path


def benchmark_chart(rows: list[dict], group: str, path: str) -> str:
    """One benchmark's settings as bars per model; published rows grey, a setting not run left out."""
    cols = [i for i, (_, g) in enumerate(table.COLUMNS) if g == group]
    fig = _figure(max(4.0, 1.1 + 0.9 * len(rows) * len(cols) / 2 + 0.6 * len(rows)), 3.4)
    ax = fig.add_subplot()
    width = 0.8 / len(cols)
    for k, ci in enumerate(cols):
        xs, hs, colours = [], [], []
        for m, row in enumerate(rows):
            value = row["cells"][ci]["value"]
            if value is not None:
                xs.append(m - 0.4 + width * (k + 0.5))
                hs.append(value)
                colours.append(PUBLISHED if row["published"] else EVALUATED)
        bars = ax.bar(xs, hs, width * 0.92, color=colours, edgecolor="black", linewidth=0.5,
                      hatch=None if k == 0 else "//", label=table.COLUMNS[ci][0])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(rows)), [label(r["model"] + (" (published)" if r["published"] else ""), 28)
                                     for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title(GROUP_TITLES[group])
    if len(cols) > 1:
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def acceptance_chart(summary: dict, path: str) -> str:
    """Per model pair, each model's share of acceptable responses stacked with the rest, Wilson 95% whiskers."""
    bars = [(f"{label(m, 30)}  (vs {label(p['models'][1 - i], 24)})", a)
            for p in summary["pairs"] for i, (m, a) in enumerate(p["acceptance"].items())]
    fig = _figure(7.5, 1.2 + 0.42 * len(bars))
    ax = fig.add_subplot()
    ys = list(range(len(bars)))[::-1]
    rates = [100 * a["rate"] for _, a in bars]
    ax.barh(ys, rates, color="#4c9a5f", edgecolor="black", linewidth=0.5, label="acceptable")
    ax.barh(ys, [100 - r for r in rates], left=rates, color="#e3e3e3", edgecolor="black", linewidth=0.5,
            label="not acceptable")
    lows = [r - 100 * a["ci95"][0] if a["ci95"] else 0 for r, (_, a) in zip(rates, bars)]
    highs = [100 * a["ci95"][1] - r if a["ci95"] else 0 for r, (_, a) in zip(rates, bars)]
    ax.errorbar(rates, ys, xerr=[lows, highs], fmt="none", ecolor="black", capsize=3, linewidth=0.8)
    for y, r in zip(ys, rates):
        ax.text(2, y, f"{r:.1f}%", va="center", fontsize=8, color="white")
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of responses judged acceptable (95% Wilson interval)")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncols=2)
    ax.set_title("Acceptance")
    return _save(fig, path)


def preference_chart(summary: dict, path: str) -> str:
    """Per model pair a 100% bar of the 5-way preference, from the pair's first model's side."""
    from camel_jax.human_eval.stats import SCALE

    pairs = summary["pairs"]
    fig = _figure(7.5, 1.6 + 0.5 * len(pairs))
    ax = fig.add_subplot()
    ys = list(range(len(pairs)))[::-1]
    left = [0.0] * len(pairs)
    names = ("clearly better", "slightly better", "tie", "slightly worse", "clearly worse")
    for k, colour, name in zip(SCALE, PREFERENCE_COLOURS, names):
        share = [100 * p["preference"]["shares"][k] for p in pairs]
        ax.barh(ys, share, left=left, color=colour, edgecolor="black", linewidth=0.5, label=name)
        for y, x0, w in zip(ys, left, share):
            if w >= 6:
                ax.text(x0 + w / 2, y, f"{w:.0f}", ha="center", va="center", fontsize=7)
        left = [a + b for a, b in zip(left, share)]
    ax.set_yticks(ys, [f"{label(p['models'][0], 30)} vs {label(p['models'][1], 30)}" for p in pairs], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of items: the first model of each pair is … than the second")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncols=5)
    ax.set_title("Preference")
    return _save(fig, path)
