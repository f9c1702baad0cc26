"""The paper's four runs planned on five TPU generations: the smallest slice each fits, every row compiled.

`python scripts/paper_configs.py [--models llama-7b,...] [--generations v4,...] [--render_only]` walks, for each
(model, generation) cell, the generation's slices from the smallest up. On each slice the planner's own candidates
(search.candidates: meshes fsdp × mp, gradient accumulation, remat) are ordered by their analytic floor (floor.py)
and the most frugal one is compiled: the least model parallelism whose floor fits HBM, then the lowest floor. If
XLA accepts it but its total exceeds HBM ("at risk": the floor does not model XLA's own overheads, e.g. the
accumulation loop's gradient copies), the next one is compiled too (`--per_slice`, 2 in all); the compiler's
out-of-memory moves on to the next slice size. A slice on which no candidate's floor fits is skipped without
compiling. The first compile judged "fits" ends the cell. The floor only orders and prunes; the verdict is always XLA's compile.

Compiles cost a minute or more each here, so every compiled plan is cached in a JSON beside the doc, keyed by the
cell's configuration and a fingerprint of the code that decides it (camel_jax/model, train, plan). A rerun reuses
a cached plan only while that code is unchanged, so after the step's memory changes it recompiles, and nothing
else. `--render_only` writes the doc from the cache without compiling (cells not reached say so).

Why these inputs: the runs are `camel_jax/train/config.py`'s paper sizes (seq 2048 for 7B/13B, 1024 for 30B/65B,
global batch 128 rows) on the TÜLU human+GPT mix, whose 490,694 examples are the sum of the paper's Table 1 counts
(open_instruct.md §2.4, recalled, not checked against the PDF). Rows are not packed (the paper pads each batch), so
the step count is 2 epochs × ceil(490,694 / 128) and the step time is that of full-length rows: an upper bound.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import sys
import time
from typing import Callable, Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("llama-7b", "llama-13b", "llama-30b", "llama-65b")
GENERATIONS = ("v3", "v4", "v5e", "v5p", "v6e")
MIXTURE = "tulu_human_gpt_mix"
TULU_EXAMPLES = 490_694  # FLAN V2 100,000 + CoT 100,000 + Dolly 15,011 + OASST1 34,795 + GPT4-Alpaca 52,002
EPOCHS = 2  # + Code-Alpaca 20,022 + ShareGPT 168,864 (paper Table 1, as recalled in open_instruct.md §2.4)
FINGERPRINT_DIRS = ("camel_jax/model", "camel_jax/train", "camel_jax/plan")
# Config the paper's run needs on a generation, and why: on v3 the default attention (train.attention=auto, splash)
# does not compile: Mosaic E2001 "CompileTimeMosaicUnsupportedRhsType: Unsupported matmul RHS type on target:
# vector<128x128xbf16>" (libtpu 0.0.42.1, seen compiling llama-7b for v3-16), so v3 rows use block_sparse.
GEN_ARGS = {"v3": ("--config.train.attention=block_sparse",)}


def paper_steps(examples: int = TULU_EXAMPLES, batch: int = 128, epochs: int = EPOCHS) -> int:
    """Optimizer steps of the paper's run: each epoch's last, partial batch is a step too."""
    return epochs * math.ceil(examples / batch)


def code_fingerprint(root: str = ROOT) -> str:
    """sha256 (12 hex) over the sources that decide a compiled plan; a cached plan is reused only under it."""
    h = hashlib.sha256()
    for d in FINGERPRINT_DIRS:
        for base, _, files in sorted(os.walk(os.path.join(root, d))):
            for f in sorted(files):
                if f.endswith(".py"):
                    p = os.path.join(base, f)
                    h.update(os.path.relpath(p, root).encode() + b"\0" + open(p, "rb").read())
    return h.hexdigest()[:12]


def entry_key(model: str, topology: str, mesh: str, accum: int, remat: str) -> str:
    extra = GEN_ARGS.get(topology.split("-")[0], ())
    return "|".join((model, topology, mesh, str(accum), remat) + extra)


def order(cands: list[dict]) -> list[dict]:
    """The candidates worth compiling on one slice, most likely to fit first: floor within HBM, then the least
    model parallelism among those (mp's all-reduces cost time the FLOP model does not see), then the lowest floor;
    ties keep the search's fastest-first order."""
    ok = [c for c in cands if c["floor"] <= c["hbm"]]
    return sorted(ok, key=lambda c: (c["mp"], c["floor"], c["rank"]))


def walk(slices: Iterable[str], floors: Callable[[str], list[dict]], compiled: Callable[[str, dict], dict | None],
         per_slice: int = 1, log: Callable[[str], None] = print) -> dict:
    """One cell: the first compiled plan that fits, walking `slices` smallest first.

    floors(slice) -> candidates {mesh, accum, remat, mp, floor, hbm, rank}; compiled(slice, candidate) -> the plan's
    JSON (verdict, ...) or None when it is not compiled (render-only: the walk stops there). Returns {status:
    "fits"|"not compiled"|"nothing fits"|"error", plan, tried: [(slice, candidate, verdict, bytes per device)],
    skipped: [slices]}."""
    tried, skipped = [], []
    for s in slices:
        cands = order(floors(s))
        if not cands:
            skipped.append(s)
            continue
        for c in cands[:per_slice]:
            p = compiled(s, c)
            if p is None:
                log(f"  {s} {c['mesh']} x{c['accum']} {c['remat']}: not compiled yet")
                return {"status": "not compiled", "plan": None, "tried": tried, "skipped": skipped, "next": (s, c)}
            if p["verdict"] == "error":  # not an out-of-memory: the program itself does not compile here
                return {"status": "error", "plan": p, "tried": tried, "skipped": skipped, "next": (s, c)}
            tried.append((s, c, p["verdict"], p["bytes_per_device"]))
            if p["verdict"] == "fits":
                return {"status": "fits", "plan": p, "tried": tried, "skipped": skipped}
            if p["verdict"] == "does not fit":  # the compiler's own check failed the most frugal: a larger slice
                break
    return {"status": "nothing fits", "plan": None, "tried": tried, "skipped": skipped}


# --- the planner side (imports camel_jax: JAX and libtpu) ---

def paper_cfg(model: str, gen: str):
    from camel_jax.train import config as C

    cfg = C.paper_config(model, MIXTURE)
    for a in GEN_ARGS.get(gen, ()):
        field, value = a[len("--config.train."):].split("=")
        setattr(cfg.train, field, value)
    return cfg


def slice_floors(model: str, topology: str) -> list[dict]:
    """Every search candidate on `topology` with its analytic floor per device (no compile)."""
    from camel_jax.plan.floor import floor_bytes
    from camel_jax.plan.planner import resolve, state_memory
    from camel_jax.plan.search import _with, candidates
    from camel_jax.plan.topology import parse_topology
    from camel_jax.model import partition

    cfg, topo = paper_cfg(model, topology.split("-")[0]), parse_topology(topology)
    out, states = [], {}
    for rank, (mesh, accum, remat) in enumerate(candidates(cfg, topo)):
        c, spec, m = resolve(_with(cfg, accum, remat), topo, mesh)
        if mesh not in states:
            states[mesh] = state_memory(spec, c, m)
        rows = spec.micro_rows // partition.data_shards(m, partition.TRAIN_RULES)
        fl = floor_bytes(spec.model, states[mesh], rows, spec.seq_len, m.shape["mp"], c.train.loss_chunk,
                         spec.grad_accum)
        out.append({"mesh": mesh, "accum": accum, "remat": remat, "mp": m.shape["mp"], "floor": fl["floor"],
                    "hbm": topo.usable_bytes, "rank": rank})
    return out


def plan_command(model: str, topology: str, mesh: str, accum: int, remat: str) -> str:
    extra = "".join(" " + a for a in GEN_ARGS.get(topology.split("-")[0], ()))
    return (f"python -m camel_jax.plan --model={model} --topology={topology} --mesh={mesh} "
            f"--config.train.grad_accum={accum} --config.train.remat={remat}{extra}")


def compile_plan(model: str, topology: str, c: dict) -> dict:
    """The planner's plan_run for one candidate, as its --json object plus the reproducing command."""
    from camel_jax.plan.planner import plan_run
    from camel_jax.plan.report import as_json
    from camel_jax.plan.search import _with
    from camel_jax.plan.topology import parse_topology

    gen = topology.split("-")[0]
    args = (f"--config.train.grad_accum={c['accum']}", f"--config.train.remat={c['remat']}") + GEN_ARGS.get(gen, ())
    command = plan_command(model, topology, c["mesh"], c["accum"], c["remat"])
    try:
        p = plan_run(_with(paper_cfg(model, gen), c["accum"], c["remat"]), parse_topology(topology), c["mesh"],
                     config_args=args)
    except Exception as e:  # not the compiler's out-of-memory (plan_run answers that): recorded, not retried
        lines = [line for line in str(e).splitlines() if line.strip()]
        return {"verdict": "error", "error": f"{type(e).__name__}: {' '.join(lines[:2])[:400]}",
                "topology": topology, "bytes_per_device": 0, "compile_seconds": 0.0, "plan_command": command}
    out = as_json(p)
    out["plan_command"] = command
    return out


class Cache:
    """The JSON of compiled plans beside the doc; every write merges under a lock (two runs may share it)."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> dict:
        if not os.path.exists(self.path):
            return {"entries": {}, "errors": {}}
        with open(self.path) as f:
            return json.load(f)

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)  # the folder: no lock file left
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put(self, section: str, key: str, value: dict) -> None:
        with self._locked():
            data = self.load()
            data.setdefault(section, {})[key] = value
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)


def run_cell(model: str, gen: str, cache: Cache, fingerprint: str, compile_ok: bool, per_slice: int,
             stale_ok: bool, log=print) -> dict:
    from camel_jax.plan.topology import GENERATIONS, TopologyError, parse_topology, topology_devices, valid_sizes

    slices = [f"{gen}-{n}" for n in valid_sizes(GENERATIONS[gen])]

    def floors(s):
        try:
            topology_devices(parse_topology(s))
        except TopologyError as e:
            cache.put("errors", s, {"error": str(e)})
            log(f"  {s}: {e}")
            return []
        return slice_floors(model, s)

    def compiled(s, c):
        key = entry_key(model, s, c["mesh"], c["accum"], c["remat"])
        e = cache.load()["entries"].get(key)
        if e and (e["fingerprint"] == fingerprint or stale_ok):
            log(f"  {s} {c['mesh']} x{c['accum']} {c['remat']}: cached {e['plan']['verdict']}"
                f"{'' if e['fingerprint'] == fingerprint else ' (stale code)'}")
            return dict(e["plan"], stale=e["fingerprint"] != fingerprint)
        if not compile_ok:
            return None
        log(f"  {s} {c['mesh']} x{c['accum']} {c['remat']}: compiling (floor {c['floor'] / 2**30:.2f} GiB) ...")
        t0 = time.time()
        p = compile_plan(model, s, c)
        log(f"  {s}: {p['verdict']}, {p['bytes_per_device'] / 2**30:.2f} GiB, {time.time() - t0:.0f} s"
            f"{' ' + p['error'] if p['verdict'] == 'error' else ''}")
        cache.put("entries", key, {"fingerprint": fingerprint, "plan": p, "load": os.getloadavg()[0],
                                   "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        return dict(p, stale=False)

    log(f"{model} on {gen}:")
    return walk(slices, floors, compiled, per_slice, log=log)


# --- the doc ---

def _gib(n) -> str:
    return f"{n / 2**30:.2f}"


def _duration(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def row(model: str, gen: str, cell: dict) -> str:
    tried = "; ".join(f"{s} {c['mesh']}×{c['accum']} {c['remat']}: {v} ({_gib(b)} GiB)" for s, c, v, b in cell["tried"]
                      if v != "fits")
    if cell["status"] == "error":
        tried = (tried + "; " if tried else "") + f"`{cell['plan']['plan_command']}`"
    if cell["status"] != "fits":
        why = {"not compiled": "not compiled yet (next: {} {} ×{} {})".format(cell["next"][0], cell["next"][1]["mesh"],
                                                                            cell["next"][1]["accum"],
                                                                            cell["next"][1]["remat"])
               if cell.get("next") else "not compiled yet",
               "nothing fits": "no slice of this generation fits",
               "error": "does not compile: {}".format((cell["plan"] or {}).get("error", ""))}[cell["status"]]
        return f"| {model} | {gen} | {why} | | | | | | | {tried} |"
    p = cell["plan"]
    steps = paper_steps(batch=p["batch_size"])
    mem = p["memory"]
    return (f"| {model} | {gen} | **{p['topology']}** ({p['chips']} chips) | {p['mesh']} | {p['micro_rows']} × "
            f"{p['grad_accum']} | {p['remat']} | {_gib(p['bytes_per_device'])} / {_gib(p['hbm_bytes_per_device'])} "
            f"({1 - p['bytes_per_device'] / p['hbm_bytes_per_device']:.0%} spare; state {_gib(mem['state'])}, temp {_gib(mem['temp'])}; floor {_gib(p['floor_bytes_per_device'])}) | "
            f"{p['step_seconds_at_mfu']:.2f} s at {p['mfu']:.1%} | {_duration(steps * p['step_seconds_at_mfu'])} | "
            f"`{p['plan_command']}`{' (stale code)' if p.get('stale') else ''}"
            f"{'; before it: ' + tried if tried else ''} |")


def _generations():
    from camel_jax.plan.topology import GENERATIONS as G

    return [G[g] for g in GENERATIONS]


def render(cells: dict, cache_data: dict, fingerprint: str, models, gens) -> str:
    steps = paper_steps()
    lines = [
        "# The paper's configurations, planned",
        "",
        "Generated by `python scripts/paper_configs.py` (do not edit by hand); every filled row is one compile by",
        "`camel_jax.plan` (the same train step `camel_jax.train` runs, lowered for the slice's devices from this CPU",
        "host) and the command in its row reproduces it. Compiled plans are cached in `paper_configs.json` beside this",
        f"file, keyed by a fingerprint of camel_jax/model, train and plan (this table: `{fingerprint}`).",
        "",
        "- **Runs**: `camel_jax/train/config.py`'s paper sizes on the TÜLU human+GPT mix: global batch 128 rows; seq",
        "  2048 for 7B/13B and 1024 for 30B/65B (the 30B/65B length is recalled from the paper's appendix in",
        "  `open_instruct.md` §3, not in the repo); bf16 compute, fp32 weights and AdamW state, fused head loss.",
        "- **Search**: per generation, slices from the smallest up. On each, the planner's candidates (meshes fsdp ×",
        "  mp1/2/4/8, gradient accumulation dividing 128, remat none/save_dots/full) are ordered by the analytic floor:",
        "  the least mp whose floor fits HBM, then the lowest floor; the first is compiled, and if XLA accepts it over",
        "  HBM (at risk) the second too; the compiler's out-of-memory moves to the next size. Slices where no floor",
        "  fits are skipped uncompiled. The first compile that **fits** (XLA's `argument + output − alias + temp + code` ≤",
        "  the generation's usable HBM) is the row; the compiles before it (at risk / does not fit) are listed.",
        "  The configuration is the most frugal that fits, not the fastest: `--search` on the row's slice finds that.",
        "- **v3**: its rows add `--config.train.attention=block_sparse`: the default attention (`auto`, splash) does",
        "  not compile for v3 with this libtpu (Mosaic E2001, `CompileTimeMosaicUnsupportedRhsType: Unsupported",
        "  matmul RHS type on target: vector<128x128xbf16>`, compiling llama-7b for v3-16); `auto` now picks",
        "  block_sparse on v2/v3 itself (`model/config.py platform_of`), so the flag only pins it.",
        "- **Memory**: per JAX device (a core on v3, a chip elsewhere), GiB: XLA's total / usable HBM, its state and",
        "  temporaries, and the analytic floor (plan/floor.py; sharded state + one micro-batch's activations + head).",
        "- **Usable HBM per device** (plan/topology.py, with its sources): " + ", ".join(
            f"{g.name} {g.usable_bytes / 2**30:.2f} GiB" for g in _generations()) + " (v6e's figure is unverified; v5p's"
        " is MaxText's bytes_limit, above the 95 GB nominal).",
        "- **Step time**: the analytic model FLOPs per step over the slice's peak at the generation's published MFU",
        "  (plan/topology.py: v3 47.3%, v4 56%, v5e 56.1%, v5p 65.4%, v6e 43.8%). It does not depend on the remat",
        "  policy or the mesh; remat full's recomputation and mp's all-reduces would lower the MFU actually reached.",
        f"- **Two epochs**: {steps:,} steps = 2 × ceil(490,694 / 128); 490,694 examples is the sum of the paper's",
        "  Table 1 counts for the mix (FLAN V2 100,000, CoT 100,000, Dolly 15,011, OASST1 34,795, GPT4-Alpaca 52,002,",
        "  Code-Alpaca 20,022, ShareGPT 168,864; recalled in `open_instruct.md` §2.4, not checked against the PDF;",
        "  `allenai/tulu-v1-sft-mixture` is the published data). Rows are counted at full length (the paper does not",
        "  pack and pads each batch to its longest row), so the time is an upper bound.",
        "",
        "| model | gen | smallest slice that fits | mesh | micro-batch × accum | remat | per device: XLA / HBM GiB "
        "| step | 2 epochs | reproduce |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for g in gens:
            lines.append(row(m, g, cells[(m, g)]))
    errors = cache_data.get("errors", {})
    if errors:
        lines += ["", "Slices libtpu could not describe here (`jax.experimental.topologies`):", ""]
        lines += [f"- `{s}`: {e['error']}" for s, e in sorted(errors.items())]
    done = [e for e in cache_data.get("entries", {}).values() if e["fingerprint"] == fingerprint]
    if done:
        secs = sorted(e["plan"]["compile_seconds"] for e in done)
        lines += ["", f"{len(done)} compiles under this code; compile time median {secs[len(secs) // 2]:.0f} s, max "
                      f"{secs[-1]:.0f} s (2 shared CPU cores, load about "
                      f"{sorted(e['load'] for e in done)[len(done) // 2]:.1f})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--generations", default=",".join(GENERATIONS))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "paper_configs.md"))
    ap.add_argument("--per_slice", type=int, default=2,
                    help="compiles per slice while they come back 'at risk' (a compiler out-of-memory moves on)")
    ap.add_argument("--render_only", action="store_true", help="write the doc from the cache; compile nothing")
    ap.add_argument("--stale_ok", action="store_true", help="reuse plans compiled under other code (marked)")
    a = ap.parse_args(argv)
    models, gens = a.models.split(","), a.generations.split(",")
    for m in models:
        if m not in MODELS:
            ap.error(f"--models: {m!r} is not one of {', '.join(MODELS)}")
    for g in gens:
        if g not in GENERATIONS:
            ap.error(f"--generations: {g!r} is not one of {', '.join(GENERATIONS)}")
    if a.per_slice < 1:
        ap.error("--per_slice must be >= 1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    cache = Cache(os.path.splitext(a.out)[0] + ".json")
    fp = code_fingerprint()
    log = lambda s: print(s, flush=True)  # noqa: E731
    cells = {(m, g): run_cell(m, g, cache, fp, not a.render_only, a.per_slice, a.stale_ok, log)
             for g in gens for m in models}  # a generation's cells together: --generations orders the work
    if set(models) == set(MODELS) and set(gens) == set(GENERATIONS):
        with open(a.out, "w") as f:
            f.write(render(cells, cache.load(), fp, models, gens))
        log(f"wrote {a.out}")
    else:
        log("a subset: the doc is written only by a run over every cell (use --render_only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
