"""`python -m camel_jax.train [--config=configs/<exp>.py[:variant]] [--config.<path>=<value> ...] [--mesh=dp4,mp8]
[--output_dir=DIR] [--init_from=CKPT_DIR]`.

With no arguments: the embedded default (stories260K tuned on the bundled TÜLU-mix sample, on all local devices).
Multi-host: on TPU pods just run the same command on every host (`tpu_setup.sh train` does); under SLURM `srun` it;
on other GPU clusters add `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or set
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
A mistake in a flag, config file, variant, field, checkpoint or data is one line and exit code 2, reported before
anything is compiled or written.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from camel_jax import cli
from camel_jax.train.config import help_text

__doc__ = f"{__doc__}\n{help_text()}\n"  # absl's --help prints the main module's docstring
PROG = "python -m camel_jax.train"
_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.py")


def _check(argv) -> None:
    cli.check_config_flag(argv, _DEFAULT_CONFIG)


if __name__ == "__main__":  # before DEFINE_config_file, which already applies sys.argv's overrides to the default
    if cli.run(PROG, _check, sys.argv):
        sys.exit(cli.EXIT_USAGE)

config_flags.DEFINE_config_file("config", default=_DEFAULT_CONFIG,
                                help_string="config file[:variant]; default: the embedded stories260K run "
                                            "(variants and fields: see above)")
flags.DEFINE_string("mesh", "", "mesh spec over dp,fsdp,mp, e.g. dp4,mp8 or fsdp-1 (default: all devices on fsdp)")
flags.DEFINE_string("output_dir", "outputs/default", "where checkpoints, metrics and logs go; rerun to resume")
flags.DEFINE_string("init_from", None, "checkpoint dir from `convert import-hf` (overrides config.init_from)")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-process runs without auto-detection)")
flags.DEFINE_integer("num_processes", None, "number of processes (with --coordinator_address)")
flags.DEFINE_integer("process_id", None, "this process's index (with --coordinator_address)")
flags.DEFINE_bool("progress", True, "show a progress bar")
FLAGS = flags.FLAGS


def _train(argv) -> int:
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}; config fields are set as --config.<path>=<value>")
    if not FLAGS["verbosity"].present:  # Orbax logs every save at INFO through absl; keep the terminal readable
        logging.set_verbosity(logging.WARNING)
    from camel_jax.train import distributed

    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from camel_jax.train.loop import TrainingDiverged, run

    try:
        run(FLAGS.config, mesh_spec=FLAGS.mesh, output_dir=FLAGS.output_dir, init_from=FLAGS.init_from,
            progress=FLAGS.progress)
    except TrainingDiverged as e:
        print(f"\nSTOPPED: {e}", file=sys.stderr)
        return 3
    return 0


def main(argv) -> int:
    from camel_jax.data.mixtures import MixtureError
    from camel_jax.data.records import RecordError
    from camel_jax.model.mesh import MeshError
    from camel_jax.train.config import ConfigError
    from camel_jax.train.distributed import DistributedError

    return cli.run(PROG, _train, argv, errors=(ConfigError, MeshError, MixtureError, RecordError, DistributedError))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.absl_flags_parser(PROG))
