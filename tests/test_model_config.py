"""Preset table: published sizes, counted abstractly (eval_shape, nothing allocated), and config validation."""
import math

import jax
import pytest

from camel_jax.model.llama import abstract_params
from camel_jax.model.config import PRESETS, get_preset

PUBLISHED_B = {"llama-7b": 6.74, "llama-13b": 13.0, "llama-30b": 32.5, "llama-65b": 65.2,
               "llama2-7b": 6.74, "llama2-13b": 13.0, "llama2-70b": 69.0}


@pytest.mark.parametrize("name", sorted(PUBLISHED_B))
def test_published_parameter_counts(name):
    cfg = get_preset(name)
    tree = abstract_params(cfg)
    counted = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
    assert counted == cfg.num_params()
    # Published figures are quoted to 3 significant digits (65.29B is called "65.2B" in the LLaMA paper).
    unit = 0.01 if PUBLISHED_B[name] < 10 else 0.1
    assert abs(counted / 1e9 - PUBLISHED_B[name]) < unit


def test_bench_58m_shape():
    cfg = get_preset("bench-58m")
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, cfg.vocab_size) == (
        512, 8, 8, 1376, 32000)
    assert 55e6 < cfg.num_params() < 60e6


def test_llama30b_is_the_33b_model():
    cfg = PRESETS["llama-30b"]
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size) == (6656, 60, 52, 17920)


def test_llama2_70b_uses_grouped_query_attention():
    assert PRESETS["llama2-70b"].kv_heads == 8


@pytest.mark.parametrize("overrides, message", [
    (dict(num_heads=5), "not divisible by num_heads"),
    (dict(num_kv_heads=3), "not divisible by num_kv_heads"),
    (dict(remat="sometimes"), "remat must be one of"),
    (dict(scan_unroll=0), "scan_unroll must be in"),
    (dict(dtype="float8"), "dtype must be"),
    (dict(hidden_size=0), "hidden_size must be positive"),
])
def test_bad_configs_fail_clearly(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_preset("tiny-mha", **overrides)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model preset 'llama-8b'.*llama-7b"):
        get_preset("llama-8b")
