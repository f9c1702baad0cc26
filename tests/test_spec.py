"""resolve_run is the one resolution of a run: the architecture actually trained (the --init_from checkpoint's),
the config's numerics, and the batch the loop feeds, which compile-only lowering uses as is."""
import json
import os
import subprocess
import sys

import jax
import pytest

from camel_jax.model.config import get_preset
from camel_jax.model.mesh import build_mesh
from camel_jax.params_io import config_to_dict
from camel_jax.train import config as C
from camel_jax.train.spec import lower_run, resolve_run
from camel_jax.train.step import BATCH_KEYS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ckpt(tmp_path, preset="tiny-gqa"):
    d = tmp_path / "ckpt"
    (d / "params").mkdir(parents=True)
    (d / "model_config.json").write_text(json.dumps(config_to_dict(get_preset(preset))))
    return str(d)


def test_init_from_checkpoint_architecture_with_the_configs_numerics(tmp_path):
    cfg = C.base_config()  # config.model = llama-7b
    cfg.init_from = _ckpt(tmp_path)
    cfg.data.max_seq_length = 128
    cfg.data.packing = True
    spec = resolve_run(C.validate(cfg))
    arch = get_preset("tiny-gqa")
    assert (spec.model.hidden_size, spec.model.num_layers, spec.model.kv_heads) == (64, 2, 2)
    assert spec.model == arch.replace(dtype="bfloat16", param_dtype="float32", remat="save_dots")
    assert spec.model_name == "tiny-gqa from --init_from (not config.model=llama-7b)"
    assert spec.source == "checkpoint" and spec.numerics["remat"] == "save_dots"
    assert (spec.grad_accum, spec.micro_rows, spec.seq_len, spec.packed) == (4, 32, 128, True)
    assert spec.batch_keys == BATCH_KEYS and "segment_ids" in BATCH_KEYS and "positions" in BATCH_KEYS
    cfg.data.max_seq_length = 256  # longer than the checkpoint's 128 (though llama-7b would take it)
    with pytest.raises(C.ConfigError, match="data.max_seq_length=256.*--init_from checkpoint's max_seq_len 128"):
        resolve_run(C.validate(cfg))


def test_builtin_and_random_init():
    spec = resolve_run(C.default_config())
    assert spec.source == "builtin" and spec.model_name == "stories260k"
    assert spec.model.vocab_size == 512 and spec.model.dtype == "float32"
    cfg = C.base_config()
    spec = resolve_run(cfg)
    assert spec.source == "random" and spec.model_name == "llama-7b" and spec.model.hidden_size == 4096


def test_bad_checkpoint_config_names_flag_and_file(tmp_path):
    cfg = C.base_config()
    cfg.init_from = _ckpt(tmp_path)
    (tmp_path / "ckpt" / "model_config.json").write_text("{")
    with pytest.raises(C.ConfigError, match=r"--init_from=.*ckpt: .*model_config.json: invalid JSON"):
        resolve_run(cfg)
    cfg.init_from = str(tmp_path / "none")
    with pytest.raises(C.ConfigError, match="--init_from=.*none"):
        resolve_run(cfg)


def test_lowering_feeds_the_loops_batch():
    cfg = C.default_config()
    cfg.data.max_seq_length = 128
    spec = resolve_run(cfg)
    mesh = build_mesh("fsdp-1", spec.model, batch=spec.micro_rows, devices=jax.devices()[:8])
    lowered = lower_run(spec, cfg, mesh)
    (_, batch), _ = lowered.args_info
    assert sorted(batch) == sorted(BATCH_KEYS)
    assert all(a.shape == (spec.grad_accum, spec.micro_rows, 128) for a in batch.values())


def test_start_up_line_names_the_architecture_trained(tmp_path):
    """config.model says llama-7b, --init_from holds stories260K: the run says (and trains) stories260K."""
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    stories = os.path.join(REPO, "camel_jax", "assets", "stories260k")
    subprocess.run([sys.executable, "-m", "camel_jax.convert", "import-llama2c", f"{stories}/stories260K.bin",
                    f"{stories}/tok512.bin", ckpt], env=env, cwd=REPO, check=True, capture_output=True)
    p = subprocess.run([sys.executable, "-m", "camel_jax.train", "--config.model=llama-7b", f"--init_from={ckpt}",
                        f"--output_dir={out}", "--config.train.max_steps=1", "--config.data.max_seq_length=64",
                        "--config.train.batch_size=2", "--config.sample.enabled=false", "--progress=false"],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("model "))
    assert line.startswith("model stories260k from --init_from (not config.model=llama-7b) (0.26M params"), line
