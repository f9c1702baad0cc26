"""`--search`: the fastest configuration of a run that fits a slice, found by compiling a few candidates.

The space is small on purpose (each compile of a 7B-65B step costs 30 s to 5 min on this host): the mesh (every device
on fsdp, or fsdp with mp 2, 4 or 8 where the model splits), gradient accumulation (the divisors of the global batch
that leave whole rows per data shard) and the remat policy (none, save_dots, full). The global batch, sequence
length and everything else stay as configured, so the training numbers are those of the configured run.
Candidates are tried in a heuristic fastest-first order: less model parallelism first (mp's activation all-reduces
cost ICI time the FLOP model does not see), then fewer hardware FLOPs ("full" recomputes the forward, a third
more), then fewer, larger micro-batches; the first that fits is the answer. A
candidate whose analytic floor (floor.py, an estimate that includes the exact sharded state) exceeds HBM is
skipped without compiling and uses up no compile; the log says "not compiled".
"""
from __future__ import annotations

import copy
from typing import Callable

from camel_jax.model.config import get_preset
from camel_jax.model.mesh import MeshError, check_model
from camel_jax.plan.flops import RECOMPUTE
from camel_jax.plan.planner import FITS, Plan, plan_run
from camel_jax.plan.topology import Topology

REMATS = ("none", "save_dots", "full")
MP_SIZES = (1, 2, 4, 8)


def candidates(cfg, topology: Topology) -> list[tuple[str, int, str]]:
    """(mesh spec, grad_accum, remat), in the order they are tried."""
    arch = get_preset(cfg.model) if not cfg.init_from else None
    batch, n = int(cfg.train.batch_size), topology.devices
    out = []
    for remat in REMATS:
        for mp in MP_SIZES:
            if n % mp or n // mp > batch:
                continue
            sizes = {"dp": 1, "fsdp": n // mp, "mp": mp}
            if arch is not None:
                try:
                    check_model(sizes, arch)
                except MeshError:
                    continue
            for accum in range(1, batch + 1):
                if batch % accum == 0 and (batch // accum) % sizes["fsdp"] == 0:
                    out.append((f"fsdp{sizes['fsdp']},mp{mp}", accum, remat))
    return sorted(out, key=lambda c: (int(c[0].split("mp")[1]), RECOMPUTE[c[2]], c[1], REMATS.index(c[2])))


def _with(cfg, accum: int, remat: str):
    c = copy.deepcopy(cfg)
    c.train.grad_accum, c.train.remat = accum, remat
    return c


def search(cfg, topology: Topology, config_args: tuple[str, ...] = (), max_compiles: int = 8,
           hbm_bytes: int | None = None, mfu: float | None = None,
           log: Callable[[str], None] = print) -> tuple[Plan | None, list[Plan]]:
    """(the first candidate that fits, every plan compiled); at most `max_compiles` compiles."""
    tried: list[Plan] = []
    cands = candidates(cfg, topology)
    log(f"search: {len(cands)} candidates (meshes fsdp x mp{'/'.join(map(str, MP_SIZES))}, grad_accum dividing "
        f"the batch of {cfg.train.batch_size}, remat {'/'.join(REMATS)}); at most {max_compiles} compiles")
    for mesh, accum, remat in cands:
        if len(tried) >= max_compiles:
            log(f"search: stopped after {max_compiles} compiles (--max_compiles)")
            break
        args = tuple(config_args) + (f"--config.train.grad_accum={accum}", f"--config.train.remat={remat}")
        p = plan_run(_with(cfg, accum, remat), topology, mesh, hbm_bytes=hbm_bytes, mfu=mfu, config_args=args,
                     precheck=True)
        how = f"compile {p.compile_seconds:.0f} s" if p.compile_seconds else p.oom["message"]
        log(f"  {mesh:<16} grad_accum {accum:<4} remat {remat:<9} -> {p.verdict:<12} "
            f"{p.bytes_per_device / 2**30:8.2f} GiB/device, {p.step_seconds():.3g} s/step at {p.mfu:.0%} MFU ({how})")
        if not p.compile_seconds:
            continue
        tried.append(p)
        if p.verdict == FITS:
            return p, tried
    return None, tried
