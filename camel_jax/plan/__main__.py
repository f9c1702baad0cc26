"""`python -m camel_jax.plan --topology=v4-64 (--config=configs/<exp>.py[:variant] | --model=PRESET)
[--config.<path>=<value> ...] [--mesh=fsdp32] [--json] [--search]`.

Compiles, without running, the train step `python -m camel_jax.train` would run with the same --config flags, for
a TPU slice, and says whether it fits each device's HBM, what it costs per step and the command that trains it.
`--model=llama-65b` stands for the paper's run of that size (`camel_jax/train/config.py:llama-65b,
tulu_human_gpt_mix`); another preset for the base recipe with that model. Batch, sequence, accumulation and remat
are config fields: --config.train.batch_size, --config.data.max_seq_length, --config.train.grad_accum,
--config.train.remat. A mistake in a flag is one line and exit code 2; so is a config that does not split over the
mesh. A compile that runs out of memory is an answer ("does not fit"), not an error: the exit status is 0, and 1
only when --search finds nothing that fits.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from camel_jax import cli

PROG = "python -m camel_jax.plan"
_TRAIN_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train", "config.py")


def _model_args(argv: list[str]) -> list[str]:
    """argv with --model=PRESET replaced by the --config flags it stands for (placed first, so that explicit
    --config.<path> overrides win); UsageError when both --config and --model are given."""
    model = cli._flag_value(argv, "model")
    if model is None:
        return argv
    if cli._flag_value(argv, "config") is not None:
        raise cli.UsageError("give --config or --model, not both")
    from camel_jax.model.config import PRESETS
    from camel_jax.train.config import SIZES, base_config

    if model not in PRESETS:
        raise cli.UsageError(f"--model={model}: unknown preset; known: {', '.join(sorted(PRESETS))}")
    path = os.path.relpath(_TRAIN_CONFIG) if not os.path.relpath(_TRAIN_CONFIG).startswith("..") else _TRAIN_CONFIG
    if model in SIZES:
        extra = [f"--config={path}:{model},tulu_human_gpt_mix"]
    else:
        extra = [f"--config={path}:base", f"--config.model={model}"]
        seq = min(PRESETS[model].max_seq_len, base_config().data.max_seq_length)
        if seq != base_config().data.max_seq_length:
            extra.append(f"--config.data.max_seq_length={seq}")
    rest, skip = [], False
    for i, a in enumerate(argv[1:], 1):
        if skip:
            skip = False
        elif a in ("--model", "-model"):
            skip = True
        elif not a.startswith(("--model=", "-model=")):
            rest.append(a)
    return [argv[0]] + extra + rest


def _config_args(argv: list[str]) -> tuple[str, ...]:
    """The flags that set the run up, as `camel_jax.train` takes them (for the command the plan prints)."""
    return tuple(a for a in argv[1:] if a.startswith(("--config", "-config")))


def _check(argv: list[str]) -> None:
    cli.check_config_flag(argv, f"{_TRAIN_CONFIG}:base")


if __name__ == "__main__":  # before DEFINE_config_file, which already applies sys.argv's overrides
    try:
        sys.argv = _model_args(sys.argv)
    except cli.UsageError as e:
        cli.fail(PROG, e)
    if cli.run(PROG, _check, sys.argv):
        sys.exit(cli.EXIT_USAGE)

config_flags.DEFINE_config_file("config", default=f"{_TRAIN_CONFIG}:base",
                                help_string="config file[:variant], as `camel_jax.train` takes it (default: the "
                                            "paper's 7B recipe)")
flags.DEFINE_string("model", None, "a model preset instead of --config: the paper's run of that size, or the base "
                                   "recipe with that model")
flags.DEFINE_string("topology", None, "TPU slice: v2-N, v3-N, v4-N, v5p-N (N = TensorCores) or v5e-N, v6e-N "
                                      "(N = chips), e.g. v4-64, v5e-16")
flags.DEFINE_string("mesh", "", "mesh over dp,fsdp,mp as for camel_jax.train (default: every device on fsdp)")
flags.DEFINE_float("mfu", None, "model-FLOPs utilisation for the predicted step time (default: a published figure "
                                "for the generation, see plan/topology.py)")
flags.DEFINE_float("hbm_gib", None, "usable HBM per device to judge against, GiB (default: the generation's)")
flags.DEFINE_bool("json", False, "print one JSON object instead of the report")
flags.DEFINE_bool("search", False, "try meshes, micro-batch sizes and remat policies; print the fastest that fits")
flags.DEFINE_integer("max_compiles", 8, "--search: at most this many compiles")
FLAGS = flags.FLAGS


def _plan(argv) -> int:
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}; config fields are set as --config.<path>=<value>")
    if not FLAGS.topology:
        raise cli.UsageError("--topology is required, e.g. --topology=v4-64")
    if FLAGS.mfu is not None and not 0 < FLAGS.mfu <= 1:
        raise cli.UsageError(f"--mfu={FLAGS.mfu}: must be in (0, 1]")
    if FLAGS.hbm_gib is not None and not FLAGS.hbm_gib > 0:
        raise cli.UsageError(f"--hbm_gib={FLAGS.hbm_gib}: must be > 0")
    if FLAGS.search and FLAGS.mesh:
        raise cli.UsageError("--search chooses the mesh; drop --mesh")
    if FLAGS.max_compiles < 1:
        raise cli.UsageError(f"--max_compiles={FLAGS.max_compiles}: must be >= 1")
    from camel_jax.plan.planner import plan_run
    from camel_jax.plan.report import as_json, text
    from camel_jax.plan.search import search
    from camel_jax.plan.topology import GIB, parse_topology

    topo = parse_topology(FLAGS.topology)
    hbm = int(FLAGS.hbm_gib * GIB) if FLAGS.hbm_gib is not None else None
    args = _config_args(sys.argv)
    if FLAGS.search:
        log = (lambda s: print(s, file=sys.stderr)) if FLAGS.json else print
        best, tried = search(FLAGS.config, topo, args, FLAGS.max_compiles, hbm, FLAGS.mfu, log=log)
        if FLAGS.json:
            print(json.dumps({"best": as_json(best) if best else None, "tried": [as_json(p) for p in tried]}))
        elif best is None:
            print(f"search: nothing tried fits {topo.name}; try a larger slice or --max_compiles")
        else:
            print(f"\nfastest that fits:\n{text(best)}")
        return 0 if best else 1
    p = plan_run(FLAGS.config, topo, FLAGS.mesh or None, hbm_bytes=hbm, mfu=FLAGS.mfu, config_args=args)
    print(json.dumps(as_json(p)) if FLAGS.json else text(p))
    return 0


def main(argv) -> int:
    from camel_jax.model.mesh import MeshError
    from camel_jax.plan.topology import TopologyError
    from camel_jax.train.config import ConfigError

    return cli.run(PROG, _plan, argv, errors=(ConfigError, MeshError, TopologyError))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.absl_flags_parser(PROG))
