"""The training config: every paper variant loads and validates; bad values fail naming the field; CLI overrides."""
import pathlib

import pytest
from absl import flags
from ml_collections import config_flags

from camel_jax.model.config import PRESETS
from camel_jax.train import config as C
from camel_jax.train.spec import resolve_run

REPO = pathlib.Path(__file__).resolve().parent.parent


def _parse(argv):
    """Load a config exactly as the CLI does (config_flags, default = the embedded run), on a private FlagValues."""
    fv = flags.FlagValues()
    argv = ["prog", *argv]
    config_flags.DEFINE_config_file("config", default=str(REPO / "camel_jax/train/config.py"), flag_values=fv,
                                    sys_argv=argv)
    fv(argv)
    return fv.config


def test_recipe_values_match_the_paper():
    c = C.base_config()
    assert (c.train.lr, c.train.warmup_ratio, c.train.epochs, c.train.batch_size) == (2e-5, 0.03, 2, 128)
    assert (c.train.b1, c.train.b2, c.train.eps, c.train.weight_decay, c.train.max_grad_norm) == (0.9, 0.999, 1e-8,
                                                                                                  0.0, 1.0)
    assert c.data.max_seq_length == 2048 and c.data.packing is False and c.train.loss_reduction == "token"
    assert (c.train.dtype, c.train.param_dtype) == ("bfloat16", "float32")
    C.validate(c, {"dp": 1, "fsdp": 8, "mp": 1})


def test_every_paper_variant_loads_and_validates():
    variants = [f"{s},{d}" for s in C.SIZES for d in C.DATASETS + C.MIXTURES]
    assert len(variants) == 4 * 14
    for v in variants:
        cfg = _parse([f"--config={REPO / 'configs/tulu.py'}:{v}"])
        size, data = v.split(",")
        assert cfg.model == size and cfg.data.mixture == data and cfg.train.batch_size == 128
        assert cfg.model in PRESETS
        C.validate(cfg, {"dp": 1, "fsdp": 8, "mp": 1})
        resolve_run(cfg)  # the preset accepts the config's numerics


def test_config_files_load(tmp_path):
    for spec, model in [("configs/base.py", "llama-7b"), ("configs/default.py", "stories260k")]:
        cfg = _parse([f"--config={REPO / spec}"])
        assert cfg.model == model
        C.validate(cfg)


def test_cli_default_is_the_embedded_run_and_overrides_apply():
    cfg = _parse([])
    assert cfg.model == "stories260k" and cfg.init_from == C.BUILTIN_STORIES and cfg.data.packing
    cfg = _parse(["--config.train.lr=0.5", "--config.data.packing=false", "--config.train.max_steps=7"])
    assert cfg.train.lr == 0.5 and cfg.data.packing is False and cfg.train.max_steps == 7


def test_unknown_override_and_bad_variant_fail():
    with pytest.raises(Exception, match="no_such_field"):
        _parse(["--config.train.no_such_field=1"])
    with pytest.raises(Exception, match="llama-8b"):
        _parse([f"--config={REPO / 'configs/tulu.py'}:llama-8b,dolly"])
    with pytest.raises(Exception, match="tulu_mix"):
        _parse([f"--config={REPO / 'configs/tulu.py'}:llama-7b,tulu_mix"])


@pytest.mark.parametrize("field,value,match", [
    ("train.batch_size", 100, "train.batch_size=100.*grad_accum=8"),
    ("train.grad_accum", 0, "train.grad_accum=0"),
    ("train.loss_reduction", "sum", "train.loss_reduction='sum'"),
    ("train.remat", "some", "train.remat='some'"),
    ("train.loss_chunk", -1, "train.loss_chunk=-1"),
    ("train.scan_unroll", 33, "train.scan_unroll=33.*32"),
    ("train.dtype", "fp8", "train.dtype='fp8'"),
    ("train.warmup_ratio", 1.5, "train.warmup_ratio=1.5"),
    ("train.lr", 0.0, "train.lr=0.0"),
    ("train.stop_after", -2, "train.stop_after=-2"),
    ("data.mixture", "alpaca", "data.mixture='alpaca'"),
    ("data.mixture", "/nope/x.jsonl", "no such file"),
    ("data.max_seq_length", 4096, "data.max_seq_length=4096.*2048"),
    ("model", "gpt2", "config.model='gpt2'"),
])
def test_bad_values_name_the_field(field, value, match):
    c = C.paper_config("llama-7b", "dolly")
    c.train.grad_accum = 8
    node, _, leaf = field.rpartition(".")
    setattr(c[node] if node else c, leaf, value)
    with pytest.raises(C.ConfigError, match=match):
        C.validate(c)


def test_batch_must_split_over_the_mesh_before_compiling():
    c = C.paper_config("llama-7b", "dolly")  # 128 rows, grad_accum 4: micro-batch 32
    C.validate(c, {"dp": 2, "fsdp": 16, "mp": 1})
    with pytest.raises(C.ConfigError, match=r"micro-batch.*32.*dp×fsdp = 1×64"):
        C.validate(c, {"dp": 1, "fsdp": 64, "mp": 4})


def test_num_steps_max_steps_overrides_epochs():
    c = C.base_config()
    assert C.num_steps(c, 10) == 20
    c.train.max_steps = 3
    assert C.num_steps(c, 10) == 3


def test_to_dict_is_json_able():
    import json

    d = C.to_dict(C.default_config())
    assert json.loads(json.dumps(d))["sample"]["prompts"] == list(C.default_config().sample.prompts)
