"""Plan one run on one TPU slice: compile (never run) the train step `camel_jax.train` would run, and judge it.

The program is `train.spec.lower_run`'s, the loop's own, lowered from shapes for the slice's devices. Its fit is
decided here, not by the compiler: XLA's TPU compile-time check covers temporaries only (tpu_planner_facts.md §2),
so a compile that succeeds proves only that temporaries fit. Per device the need is
`argument + output - alias + temp + generated code` (XLA's own "at least" formula), against the generation's
usable HBM: at most that is **fits**, more is **at risk**, and the compiler's RESOURCE_EXHAUSTED is **does not
fit**, with the amounts it names. FLOPs are counted analytically (flops.py); step time follows at the chip's peak
and at a stated MFU.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time

import jax
from ml_collections import ConfigDict

from camel_jax.model import partition
from camel_jax.model.mesh import build_mesh, mesh_str, parse_mesh
from camel_jax.plan.flops import step_flops
from camel_jax.plan.floor import floor_bytes
from camel_jax.plan.topology import GIB, Topology, topology_devices
from camel_jax.train import config as C
from camel_jax.train.spec import RunSpec, lower_run, resolve_run, run_optimizer
from camel_jax.train.state import abstract_train_state, state_shardings

FITS, AT_RISK, NO_FIT = "fits", "at risk", "does not fit"
_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}  # XLA prints binary units
_NUM = r"([\d.]+)\s*([KMGT]?)i?B?"
_OOM_PATTERNS = (re.compile(rf"HLO temporaries \({_NUM}\) exceeds available HBM \({_NUM}\)"),
                 re.compile(rf"Used {_NUM} of {_NUM} hbm", re.I))


@dataclasses.dataclass
class Plan:
    verdict: str
    topology: Topology
    mesh: str
    spec: RunSpec
    batch_size: int
    memory: dict  # per device, bytes
    hbm_bytes: int  # usable per device, the verdict's budget
    flops: dict  # per step, all devices (flops.StepFlops.as_dict)
    mfu: float
    compile_seconds: float
    xla_flops_per_device: float | None = None  # cost_analysis: layer and micro-batch scans counted once
    oom: dict | None = None  # does not fit: what the compiler said it needs and has
    config_args: tuple[str, ...] = ()  # the --config flags that set this run up (for the train command)
    floor: dict = dataclasses.field(default_factory=dict)  # the analytic floor per device, by part (floor.py)

    @property
    def fits(self) -> bool:
        return self.verdict == FITS

    @property
    def bytes_per_device(self) -> int:
        m = self.memory
        if self.oom and not self.oom["required_bytes"]:  # not compiled (precheck): the analytic floor
            return self.floor["floor"]
        if self.oom:  # the state (its arguments) plus the temporaries XLA asked for
            return m["state"] + m["batch"] + self.oom["required_bytes"]
        return m["argument"] + m["output"] - m["alias"] + m["temp"] + m["code"]

    def with_budget(self, hbm_bytes: int) -> "Plan":
        """The same compile judged against another usable HBM per device (a what-if; no recompile)."""
        p = dataclasses.replace(self, hbm_bytes=int(hbm_bytes))
        if p.verdict != NO_FIT:
            p.verdict = FITS if p.bytes_per_device <= p.hbm_bytes else AT_RISK
        return p

    def step_seconds(self, mfu: float | None = None) -> float:
        """Model FLOPs per device over the device's peak × MFU (1.0: at peak)."""
        per_device = self.flops["total"] / self.topology.devices
        return per_device / (self.topology.generation.peak_flops * (self.mfu if mfu is None else mfu))

    def tokens_per_second(self, mfu: float | None = None) -> float:
        return self.flops["tokens"] / self.step_seconds(mfu)

    def train_command(self) -> str:
        args = " ".join(list(self.config_args) + [f"--mesh={self.mesh}"])
        return f"python -m camel_jax.train {args}"


def _bytes(num: str, unit: str) -> int:
    return int(float(num) * _UNITS[unit or "B"])


def parse_oom(message: str) -> dict | None:
    """{required_bytes, available_bytes, message} from XLA's TPU out-of-memory error; None if it is not one."""
    if "RESOURCE_EXHAUSTED" not in message and "Ran out of memory" not in message:
        return None
    first = next((line for line in message.splitlines() if line.strip()), message).strip()
    for pat in _OOM_PATTERNS:
        m = pat.search(message)
        if m:
            return {"required_bytes": _bytes(*m.group(1, 2)), "available_bytes": _bytes(*m.group(3, 4)),
                    "message": first}
    return {"required_bytes": 0, "available_bytes": 0, "message": first}


def _shard_bytes(tree, shardings) -> int:
    sizes = jax.tree.map(lambda a, s: math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize, tree, shardings)
    return int(sum(jax.tree.leaves(sizes)))


def state_memory(spec: RunSpec, cfg: ConfigDict, mesh) -> dict:
    """Per-device bytes of the train state as sharded on `mesh` (exact, from the shardings) and of the fp32
    gradient accumulator the step keeps in the parameters' sharding (it lives in XLA's temporaries)."""
    opt = run_optimizer(cfg)
    state, shard = abstract_train_state(spec.model, opt), state_shardings(spec.model, opt, mesh, partition.TRAIN_RULES)
    params = _shard_bytes(state["params"], shard["params"])
    opt_state = _shard_bytes(state["opt_state"], shard["opt_state"])
    grads = _shard_bytes(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, "float32"), state["params"]),
                         shard["params"])
    other = _shard_bytes({k: state[k] for k in ("step", "rng")}, {k: shard[k] for k in ("step", "rng")})
    rows = spec.micro_rows // partition.data_shards(mesh, partition.TRAIN_RULES)
    batch = len(spec.batch_keys) * spec.grad_accum * rows * spec.seq_len * 4  # int32/f32 [accum, rows, T] shards
    return {"params": params, "opt_state": opt_state, "gradients": grads, "state": params + opt_state + other,
            "batch": batch}


def resolve(cfg: ConfigDict, topology: Topology, mesh_spec: str | None, num_slices: int = 1):
    """(validated cfg, RunSpec, mesh on the slice's devices); ConfigError/MeshError naming the field or flag."""
    devices = topology_devices(topology, num_slices)
    sizes = parse_mesh(mesh_spec, len(devices))
    cfg = C.validate(cfg, sizes)
    spec = resolve_run(cfg)
    mesh = build_mesh(mesh_spec, spec.model, batch=spec.micro_rows, devices=devices)
    return cfg, spec, mesh


def plan_run(cfg: ConfigDict, topology: Topology, mesh_spec: str | None = None, *, hbm_bytes: int | None = None,
             mfu: float | None = None, config_args: tuple[str, ...] = (), spec: RunSpec | None = None,
             precheck: bool = False) -> Plan:
    """Compile the run's train step for `topology` and judge it. `hbm_bytes` overrides the generation's usable
    HBM (a what-if budget; the compiler keeps its own), `spec` the resolved run (tests: a shallower model).
    `precheck`: a run whose analytic floor (floor.py) exceeds the budget is "does not fit" without compiling
    (search; the floor is an estimate, so this may skip a configuration XLA would have fitted)."""
    cfg, resolved, mesh = resolve(cfg, topology, mesh_spec)
    spec = spec or resolved
    memory = state_memory(spec, cfg, mesh)
    budget = int(hbm_bytes if hbm_bytes is not None else topology.usable_bytes)
    flops = step_flops(spec.model, spec.micro_rows * spec.grad_accum, spec.seq_len).as_dict()
    rows = spec.micro_rows // partition.data_shards(mesh, partition.TRAIN_RULES)
    floor = floor_bytes(spec.model, memory, rows, spec.seq_len, mesh.shape["mp"], cfg.train.loss_chunk,
                        spec.grad_accum)
    common = dict(topology=topology, mesh=mesh_str(mesh), spec=spec, batch_size=spec.micro_rows * spec.grad_accum,
                  hbm_bytes=budget, flops=flops, mfu=topology.generation.mfu if mfu is None else float(mfu),
                  config_args=tuple(config_args), floor=floor)
    if precheck and floor["floor"] > budget:
        what = ("the sharded train state alone needs" if memory["state"] + memory["batch"] > budget else
                "the analytic floor (an estimate) is")
        oom = {"required_bytes": 0, "available_bytes": budget,
               "message": f"{what} {gib(memory['state'] if what[4] == 's' else floor['floor'])} GiB per device "
                          f"(not compiled)"}
        return Plan(NO_FIT, memory=memory, compile_seconds=0.0, oom=oom, **common)
    start = time.perf_counter()
    try:
        compiled = lower_run(spec, cfg, mesh).compile()
    except Exception as e:  # the compiler's out-of-memory is an answer; anything else is a bug and propagates
        oom = parse_oom(str(e))
        if oom is None:
            raise
        return Plan(NO_FIT, memory=memory, compile_seconds=time.perf_counter() - start, oom=oom, **common)
    seconds = time.perf_counter() - start
    m = compiled.memory_analysis()
    memory.update(argument=m.argument_size_in_bytes, output=m.output_size_in_bytes, alias=m.alias_size_in_bytes,
                  temp=m.temp_size_in_bytes, code=m.generated_code_size_in_bytes,
                  host=m.host_argument_size_in_bytes + m.host_temp_size_in_bytes)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost["flops"]) if cost and "flops" in cost else None
    return Plan(FITS, memory=memory, compile_seconds=seconds, xla_flops_per_device=xla_flops,
                **common).with_budget(budget)


def gib(n: float) -> str:
    return f"{n / GIB:.2f}"
