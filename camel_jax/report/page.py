"""The report as one self-contained HTML page: inline CSS, charts inlined as data: URIs (the PNG files are also
written beside it), and a Content-Security-Policy that forbids loading anything else, so the page reads the same
offline, mailed, or archived. Every string from the data (model names, folder names, annotators) goes through
html.escape: a model named `<script>` is shown, never run.
"""
from __future__ import annotations

import base64
import html
import os

from camel_jax.report.results import COLUMNS

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: DejaVu Sans, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.published td { background: #f2f2f2; font-style: italic; }
.tag { font-size: 0.75em; background: #ddd; border-radius: 3px; padding: 0 0.3em; font-style: normal; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figure img { max-width: 680px; height: auto; } figcaption { font-size: 0.75em; color: #555; }
table.human td { text-align: left; }
.note { font-size: 0.8em; color: #444; max-width: 70em; }
"""


def e(value) -> str:
    return html.escape(str(value), quote=True)


def _cell(cell: dict) -> str:
    if cell["value"] is None:
        return f"<td class=missing>{e(cell['status'])}</td>"
    if cell["subset"]:
        n, of = cell["subset"]
        return f"<td title='on {n} of {of} items'>{cell['value']:.1f}&dagger;</td>"
    return f"<td>{cell['value']:.1f}</td>"


def _average(row: dict) -> str:
    if row["average"] is not None:
        return f"<td>{row['average']:.1f}</td>"
    if row["partial_average"] is not None:
        return f"<td title='partial'>{row['partial_average']:.1f}*</td>"
    return "<td class=missing>&mdash;</td>"


def benchmark_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in ("model",) + COLUMNS + ("Average",))
    body = []
    for r in rows:
        tag = " <span class=tag>published</span>" if r["published"] else ""
        cls = " class=published" if r["published"] else ""
        body.append(f"<tr{cls}><td>{e(r['model'])}{tag}</td>" + "".join(_cell(c) for c in r["cells"])
                    + _average(r) + "</tr>")
    return f"<table id=benchmarks><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(path: str, alt: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{e(alt)}'>"
            f"<figcaption>{e(os.path.basename(path))}</figcaption></figure>")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(ci) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def human_tables(summary: dict) -> str:
    """Per model pair: acceptance, preference, outcome with intervals, and agreement, as in stats.render_text."""
    from camel_jax.human_eval.stats import SCALE

    out = []
    for p in summary["pairs"]:
        first, second = p["models"]
        acc = "".join(f"<tr><td>{e(m)} acceptable</td><td>{_pct(a['rate'])}{_ci(a['ci95'])} "
                      f"({a['accepted']}/{a['n']})</td></tr>" for m, a in p["acceptance"].items())
        d = p["acceptance_difference"]
        acc += (f"<tr><td>acceptance {e(first)} &minus; {e(second)} (paired over items)</td>"
                f"<td>{100 * d['value']:+.1f} points"
                + ("" if d["ci95"] is None else f" [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]")
                + "</td></tr>")
        shares = p["preference"]["shares"]
        pref = ", ".join(f"{k.replace('_', ' ')} {_pct(shares[k])}" for k in SCALE)
        o = p["outcome"]
        outcome = "; ".join(f"{name} {_pct(o[k]['rate'])}{_ci(o[k]['ci95'])}" for k, name in
                            (("win", "win"), ("tie", "tie"), ("loss", "loss"), ("win_half_tie", "win + ½ tie")))
        pa, ka, ck = (p["agreement"][k] for k in ("percent", "krippendorff_alpha", "cohen_kappa"))
        kappa = (f"{e(' / '.join(ck['annotators']))}: acceptance {_num(ck['acceptance'])}, preference 3-way "
                 f"{_num(ck['preference_3way'])}, 5-way quadratic {_num(ck['preference_5way_quadratic'])}"
                 if ck["annotators"] else f"not reported ({e(ck['reason'])})")
        out.append(
            f"<h3>{e(first)} vs {e(second)}</h3><table class=human><tbody>"
            f"<tr><td>items / annotations / annotators</td><td>{p['n_items']} / {p['n_annotations']} / "
            f"{len(p['annotators'])}</td></tr>{acc}"
            f"<tr><td>preference ({e(first)}'s view)</td><td>{pref}</td></tr>"
            f"<tr><td>{e(first)} win / tie / loss</td><td>{outcome}</td></tr>"
            f"<tr><td>percent agreement ({pa['n_items']} doubly-annotated items)</td><td>acceptance "
            f"{_num(pa['acceptance'])}, preference strict {_num(pa['preference_strict'])}, relaxed "
            f"{_num(pa['preference_relaxed'])}</td></tr>"
            f"<tr><td>Krippendorff's &alpha;</td><td>preference (ordinal) {_num(ka['preference_ordinal'])}, "
            f"acceptance (nominal) {_num(ka['acceptance_nominal'])}</td></tr>"
            f"<tr><td>Cohen's &kappa;</td><td>{kappa}</td></tr></tbody></table>")
    return "".join(out) or "<p>No annotations.</p>"


def render(rows: list[dict], published_source: str, benchmark_figures: list[str], results_dirs: list[str],
           human: dict | None = None) -> str:
    """The whole page. `human` is {"source", "summary", "figures"} when --human was given."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
             f"<title>camel_jax results</title><style>{STYLE}</style></head><body>",
             "<h1>Results</h1><h2>Benchmarks</h2>",
             "<p class=note>Evaluated with <code>python -m camel_jax.evaluate</code>: "
             + ", ".join(f"<code>{e(d)}</code>" for d in results_dirs) + ".</p>",
             benchmark_table(rows),
             "<p class=note>Average: the mean of the six benchmark groups, each the mean of its settings, only when "
             "all 11 columns ran; * marks the mean over the groups that ran, which is not the paper's Average. "
             "&dagger; marks a score on a subset of the setting's items (hover for the count), not comparable to a "
             f"published number. Published rows: {e(published_source)}</p>",
             "<div class=charts id=benchmark-charts>"
             + "".join(figure(p, os.path.basename(p)) for p in benchmark_figures) + "</div>"]
    if human is not None:
        s = human["summary"]
        parts += ["<h2>Human evaluation</h2>",
                  f"<p class=note>{e(human['source'])}: {s['n_records']} records, {s['n_deduplicated']} after "
                  f"keeping each annotator's latest answer per item; counting the {e(s['annotation'])} annotation "
                  f"per item (as open-instruct's compute_metrics.py). Intervals: Wilson 95% for acceptance, BCa "
                  f"bootstrap over items ({s['n_resamples']} resamples, seed {s['seed']}) for win rates.</p>",
                  "<div class=charts id=human-charts>"
                  + "".join(figure(p, os.path.basename(p)) for p in human["figures"]) + "</div>",
                  human_tables(s)]
    parts.append("</body></html>\n")
    return "".join(parts)
