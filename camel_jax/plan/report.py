"""A plan as the terminal shows it and as `--json` prints it (one object; the keys scripts rely on first)."""
from __future__ import annotations

from camel_jax.plan.planner import NO_FIT, Plan, gib


def as_json(p: Plan) -> dict:
    g, m = p.topology.generation, p.spec.model
    return {
        "verdict": p.verdict, "fits": p.fits, "bytes_per_device": int(p.bytes_per_device),
        "hbm_bytes_per_device": int(p.hbm_bytes), "flops_per_step": p.flops["total"],
        "topology": p.topology.name, "topology_name": p.topology.topology_name, "chips": p.topology.chips,
        "devices": p.topology.devices, "mesh": p.mesh, "model": p.spec.model_name, "params": m.num_params(),
        "batch_size": p.batch_size, "grad_accum": p.spec.grad_accum, "micro_rows": p.spec.micro_rows,
        "seq_len": p.spec.seq_len, "remat": m.remat, "dtype": m.dtype, "param_dtype": m.param_dtype,
        "memory": dict(p.memory), "floor_bytes_per_device": p.floor["floor"], "floor": dict(p.floor), "oom": p.oom, "flops": dict(p.flops),
        "xla_flops_per_device": p.xla_flops_per_device, "peak_flops_per_device": g.peak_flops, "mfu": p.mfu,
        "mfu_source": g.mfu_source, "hbm_source": g.usable_source,
        "step_seconds_at_peak": p.step_seconds(1.0), "step_seconds_at_mfu": p.step_seconds(),
        "tokens_per_second_at_peak": p.tokens_per_second(1.0), "tokens_per_second_at_mfu": p.tokens_per_second(),
        "compile_seconds": p.compile_seconds, "train_command": p.train_command(),
    }


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def verdict_line(p: Plan) -> str:
    if p.verdict == NO_FIT:
        o = p.oom
        if o["required_bytes"]:
            return (f"does not fit: the compiler needs {gib(o['required_bytes'])} GiB of temporaries per device, "
                    f"{gib(o['required_bytes'] - o['available_bytes'])} GiB more than the {gib(o['available_bytes'])}"
                    f" GiB it has (XLA: {o['message']})")
        return f"does not fit: {o['message']}"
    over = p.bytes_per_device - p.hbm_bytes
    if over > 0:
        return (f"at risk: the compiler accepted it, but it needs {gib(p.bytes_per_device)} GiB per device, "
                f"{gib(over)} GiB over the {gib(p.hbm_bytes)} usable (a compile proves only that temporaries fit)")
    return f"fits: {gib(p.bytes_per_device)} of {gib(p.hbm_bytes)} GiB per device, {gib(-over)} GiB to spare"


def text(p: Plan) -> str:
    m, mem, f, g = p.spec.model, p.memory, p.flops, p.topology.generation
    lines = [
        f"model    {p.spec.model_name}: {_count(m.num_params())} params, {m.dtype} compute, {m.param_dtype} "
        f"weights, remat {m.remat}, attention {m.attention}",
        f"batch    {p.batch_size} rows x {p.spec.seq_len} tokens = {f['tokens']:,} tokens per step, as "
        f"{p.spec.grad_accum} micro-batch(es) of {p.spec.micro_rows} rows",
        f"slice    {p.topology.describe()}",
        f"mesh     {p.mesh}",
        "memory per device (GiB)",
        f"  parameters       {gib(mem['params']):>8}",
        f"  optimizer state  {gib(mem['opt_state']):>8}",
        f"  gradients        {gib(mem['gradients']):>8}  (fp32 accumulator, sharded like the parameters; "
        f"part of the temporaries)",
    ]
    if p.verdict == NO_FIT:
        lines.append(f"  temporaries      {gib(p.oom['required_bytes']):>8}  (the compiler's figure; it stopped)")
        lines.append(f"  total            {gib(p.bytes_per_device):>8}  (state + batch + temporaries)")
    else:
        lines += [f"  temporaries      {gib(mem['temp']):>8}",
                  f"  total            {gib(p.bytes_per_device):>8}  = argument {gib(mem['argument'])} + output "
                  f"{gib(mem['output'])} - alias {gib(mem['alias'])} + temp {gib(mem['temp'])} + code "
                  f"{gib(mem['code'])}"]
    fl = p.floor
    lines.append(f"  analytic floor   {gib(fl['floor']):>8}  = state {gib(fl['state'])} + compute copy "
                 f"{gib(fl['compute_copy'])} + gradients {gib(fl['gradients'])} + accumulator "
                 f"{gib(fl['gradient_accumulator'])} + saved activations {gib(fl['saved_activations'])} + layer "
                 f"working set {gib(fl['layer_working_set'])} + loss chunk {gib(fl['loss_chunk'])} + head kernel "
                 f"{gib(fl['head_kernel'])} + its chunk gradient {gib(fl['head_partial_gradient'])} + gathered "
                 f"weights {gib(fl['gathered_weights'])} (XLA's total is {p.bytes_per_device / fl['floor']:.2f}x)")
    lines.append(f"  usable HBM       {gib(p.hbm_bytes):>8}  ({g.usable_source})")
    lines.append(f"verdict  {verdict_line(p)}")
    lines.append(f"flops    {f['total']:.4g} model FLOPs per step (matmuls {f['qkv'] + f['attn_out'] + f['mlp']:.3g}"
                 f", causal attention {f['attention']:.3g}, unembedding {f['head']:.3g}); with remat recompute "
                 f"{f['hardware']:.4g}")
    if p.xla_flops_per_device is not None:
        lines.append(f"         XLA cost_analysis: {p.xla_flops_per_device:.4g} per device (it counts each scan body "
                     f"once: one layer of one micro-batch), analytic {f['total'] / p.topology.devices:.4g}")
    lines.append(f"time     {p.step_seconds(1.0):.3g} s/step at peak ({g.peak_flops / 1e12:.1f} TFLOP/s per device, "
                 f"{p.tokens_per_second(1.0):,.0f} tokens/s); {p.step_seconds():.3g} s/step at {p.mfu:.1%} MFU "
                 f"({p.tokens_per_second():,.0f} tokens/s, "
                 f"{p.tokens_per_second() / p.topology.devices:,.0f} per device; MFU: {g.mfu_source})")
    if p.verdict != NO_FIT:
        lines.append(f"compile  {p.compile_seconds:.1f} s")
    lines.append(f"train    {p.train_command()}")
    return "\n".join(lines)
