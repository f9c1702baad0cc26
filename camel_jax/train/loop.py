"""The training run: set up (or resume), step, log, checkpoint, stop on NaN, export, summarise.

Restart semantics: a run pointed at an output dir that holds checkpoints continues from the newest *finalized*
one (Orbax only lists steps whose write completed), restoring params, optimizer state, step, RNG and the data
iterator position, so a run killed at any moment and restarted ends bitwise where an uninterrupted run ends.
A loss or gradient norm that is not finite stops the run before anything of that step is saved: metrics are read one
step late (the host queues step n+1 before waiting for step n's), and always before a save and at the end.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from camel_jax import storage
from camel_jax.model.mesh import MeshError, build_mesh, mesh_str, parse_mesh
from camel_jax.model.partition import replicated
from camel_jax.train import config as C
from camel_jax.train import distributed as D
from camel_jax.train.metrics import LateMetrics, MetricsWriter
from camel_jax.train.setup import Setup, prepare
from camel_jax.train.spec import resolve_run


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/Inf; the message says which step and where the last good checkpoint is."""


def _poison(params: Any) -> Any:
    """Test hook (train.nan_at_step): turn the weights to NaN so the train step itself yields a NaN loss."""
    return jax.tree.map(lambda x: x * jnp.nan, params)


def _meta(cfg: ConfigDict, step: int, data_state: Any, tokens: int, loss: float) -> dict:
    return {"step": int(step), "data_state": data_state, "tokens_seen": int(tokens), "loss": float(loss),
            "config": C.to_dict(cfg), "mesh_devices": jax.device_count(), "processes": jax.process_count()}


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of config fields whose values differ (test hooks and sampling are not reported)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{k}.")
        elif a != b and not (prefix == "sample." or k in ("nan_at_step", "stop_after")):
            out.append(f"{prefix}{k}")
    return out


def run(cfg: ConfigDict, mesh_spec: str = "", output_dir: str = "outputs/default", init_from: str | None = None,
        progress: bool = True, print_fn=print) -> dict[str, Any]:
    """Train per `cfg`; returns the end summary (also printed by process 0)."""
    if init_from:
        cfg.init_from = init_from
    t_start = time.perf_counter()
    main = D.is_main()
    say = print_fn if main else (lambda *a, **k: None)
    for flag, path in (("--output_dir", output_dir), ("--init_from", cfg.init_from)):
        try:
            storage.check(path or "", flag)
        except ValueError as e:
            raise C.ConfigError(str(e)) from None
    # Check the config, and the mesh against the model and the batch split before loading anything large.
    sizes = parse_mesh(mesh_spec, jax.device_count())
    C.validate(cfg, sizes)  # the process count does not constrain the batch: rows follow the batch sharding
    spec = resolve_run(cfg)
    try:  # heads vs mp, widths vs fsdp, rows vs dp×fsdp: before any data is read or file written
        mesh = build_mesh(mesh_spec, spec.model, batch=spec.micro_rows)
    except MeshError as e:
        flag = f"--mesh={mesh_spec}" if mesh_spec else "--mesh (default: every device on fsdp)"
        raise MeshError(str(e) if str(e).startswith("--mesh") else f"{flag}: {e}") from None
    output_dir = storage.resolve(output_dir)
    s: Setup = prepare(cfg, spec, output_dir, say)
    total = C.num_steps(cfg, s.data.steps_per_epoch)
    t = cfg.train
    from camel_jax.train.step import for_mesh

    attention = for_mesh(s.model_cfg, mesh).attention
    say(f"model {spec.model_name} ({s.model_cfg.num_params() / 1e6:.2f}M params, {s.model_cfg.dtype} compute, "
        f"{s.model_cfg.param_dtype} weights, {attention} attention) on mesh {mesh_str(mesh)} of "
        f"{jax.device_count()} {jax.devices()[0].device_kind} device(s), {jax.process_count()} process(es)")
    if attention == "splash_interpret":
        say("WARNING: train.attention=splash off TPU runs the TPU kernel in Pallas' interpreter: very slow, meant for "
            "checking it; use auto (block_sparse here)")
    say(f"{total} optimizer steps ({'max_steps' if t.max_steps else f'{t.epochs} epochs'}), global batch "
        f"{t.batch_size} rows × {cfg.data.max_seq_length} tokens in {t.grad_accum} micro-batch(es), "
        f"lr {t.lr:g} (warmup {t.warmup_ratio:g}, linear decay), loss reduction {t.loss_reduction}")

    from camel_jax.train.checkpointing import Checkpointer
    from camel_jax.train.optimizer import make_optimizer
    from camel_jax.train.state import abstract_train_state, init_train_state, with_shardings
    from camel_jax.train.step import batch_sharding, make_train_step

    optimizer = make_optimizer(t.lr, total, t.warmup_ratio, t.weight_decay, t.b1, t.b2, t.eps, t.max_grad_norm)
    with jax.set_mesh(mesh):
        abstract = abstract_train_state(s.model_cfg, optimizer)
        train_step = make_train_step(s.model_cfg, optimizer, mesh, t.grad_accum, t.loss_reduction,
                                     t.micro_mean_rows or None, t.loss_chunk)
        shardings = train_step.state_shardings  # the step's own (derived once, from the boxed parameters)
    ckpt = Checkpointer(storage.join(output_dir, "checkpoints"), keep=t.keep_checkpoints, async_save=t.async_checkpoint)
    start = ckpt.latest_step() or 0
    # Global rows [batch_size, T] as [grad_accum, micro rows, T]; this process loads the rows its devices hold.
    in_sharding = batch_sharding(mesh)
    batch_shape = (spec.grad_accum, spec.micro_rows, spec.seq_len)
    my_rows = D.batch_rows(in_sharding, batch_shape)
    tokens_seen, last_loss = 0, float("nan")
    if start:
        state, meta = ckpt.restore(start, with_shardings(abstract, shardings))
        data_it = s.data.iterator(meta["data_state"], rows=my_rows)
        tokens_seen, last_loss = int(meta.get("tokens_seen", 0)), float(meta.get("loss", float("nan")))
        say(f"resuming from {ckpt.directory}/{start} (step {start}/{total})")
        changed = _changed(meta.get("config", {}), C.to_dict(cfg))
        if changed:
            say(f"note: config differs from the checkpoint's in {', '.join(changed)} (the run continues with the new "
                f"values; a changed schedule length or batch makes it differ from an uninterrupted run)")
    else:
        with jax.set_mesh(mesh):
            state = init_train_state(s.model_cfg, optimizer, jax.random.PRNGKey(t.seed),
                                     params=s.load_params(shardings["params"]), shardings=shardings)
        data_it = s.data.iterator(rows=my_rows)
    if not start:
        s.show_samples("before tuning", state["params"], say)

    count_tokens = jax.jit(lambda seg: jnp.sum(seg != 0), out_shardings=replicated(mesh))
    writer = MetricsWriter(output_dir, total, start, s.model_cfg.flops_per_token(cfg.data.max_seq_length),
                           jax.device_count(), jax.devices()[0].device_kind, enabled=main, progress=progress,
                           print_every=t.print_every)
    step, saved = start, start
    compiled = None
    late = LateMetrics()

    def record(done: tuple | None) -> None:
        """Check one step's metrics (stopping on NaN/Inf) and log them."""
        nonlocal tokens_seen, last_loss
        if done is None:
            return
        n, m, n_tok, dt = done
        if not (math.isfinite(m["loss"]) and math.isfinite(m.get("grad_norm", 0.0))):
            ckpt.wait()
            good = ckpt.latest_step()
            where = f"{ckpt.directory}/{good}" if good else "none was written"
            raise TrainingDiverged(
                f"loss {m['loss']} / grad_norm {m.get('grad_norm')} at step {n} is not finite: stopping. "
                f"Nothing of this step was saved; the last good checkpoint is {where}. Lower --config.train.lr "
                f"or check the data, then rerun: the run resumes from that checkpoint.")
        tokens_seen += n_tok
        last_loss = m["loss"]
        writer.log(n, m, dt, n_tok)

    end = min(total, start + t.stop_after) if t.stop_after else total  # where this invocation stops, saved
    try:
        while step < end:
            local = {k: v for k, v in next(data_it).items() if k in spec.batch_keys}
            batch = D.global_batch(local, my_rows, in_sharding, batch_shape)
            if compiled is None:  # ahead of time, so step times (tokens/s, MFU) never include compilation
                t0 = time.perf_counter()
                with jax.set_mesh(mesh):
                    compiled = train_step.jitted.lower(state, batch).compile()
                say(f"compiled the train step in {time.perf_counter() - t0:.1f} s")
            if step == t.nan_at_step:
                state = dict(state, params=jax.jit(_poison)(state["params"]))
            t0 = time.perf_counter()
            with jax.set_mesh(mesh):
                state, m = compiled(state, batch)
                n_tok = count_tokens(batch["segment_ids"])
            step += 1
            record(late.push(step, m, n_tok, t0))  # the previous step's metrics, read now that this one is queued
            if (t.checkpoint_every and step % t.checkpoint_every == 0) or step == end:
                record(late.pop())  # never save a state whose metrics were not checked
                writer.flush()  # a bucket's log is rewritten whole: at least as often as the checkpoints
                ckpt.save(step, state, _meta(cfg, step, data_it.get_state(), tokens_seen, last_loss))
                saved = step
        record(late.pop())
        ckpt.wait()
    finally:
        data_it.close()
        writer.close()
        ckpt.close()
    if step != saved:  # pragma: no cover - every path above saves the last step
        raise RuntimeError(f"step {step} ended without a checkpoint")
    final_dir = storage.join(ckpt.directory, str(step))
    finished = step == total
    if finished:
        s.show_samples("after tuning", state["params"], say)
    else:
        say(f"stopped at step {step}/{total} (train.stop_after={t.stop_after}); rerun the same command to continue")
    export = ""
    if t.export_hf_at_end and finished:
        export = s.export_hf(final_dir, t.export_hf_at_end)
        say(f"exported a Hugging Face checkpoint to {export}")
    summary = {"steps": step, "resumed_from": start, "tokens": tokens_seen,
               "time_s": round(time.perf_counter() - t_start, 1), "final_loss": last_loss, "checkpoint": final_dir,
               "metrics": storage.join(output_dir, "metrics.jsonl"), "hf_export": export or None}
    if main:
        storage.write_text(storage.join(output_dir, "summary.json"), json.dumps(summary, indent=1))
    say(f"done: {summary['steps']} steps ({step - start} this run), {tokens_seen:,} tokens, {summary['time_s']} s, "
        f"final loss {last_loss:.4f}; checkpoint {final_dir}; metrics {summary['metrics']}")
    return summary
