"""HF <-> camel_jax mapping: logits parity with transformers' LlamaForCausalLM on tiny random models."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from camel_jax.convert import hf  # noqa: E402
from camel_jax.model import Llama  # noqa: E402


def tiny_hf_model(kv=2, theta=5000.0, tie=False, seed=0):
    torch.manual_seed(seed)
    conf = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=kv, max_position_embeddings=64,
                                    rope_theta=theta, rms_norm_eps=1e-5, tie_word_embeddings=tie)
    model = transformers.LlamaForCausalLM(conf).eval()
    with torch.no_grad():  # random norms too, so a swapped norm would show
        for n, p in model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("kv,theta,tie", [(2, 5000.0, False), (4, 10000.0, True), (1, 10000.0, False)])
def test_logits_match_transformers(kv, theta, tie):
    model = tiny_hf_model(kv, theta, tie)
    cfg = hf.config_from_hf(model.config.to_dict(), dtype="float32")
    assert (cfg.kv_heads, cfg.rope_theta, cfg.tie_embeddings) == (kv, theta, tie)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    params = hf.params_from_hf_state_dict(sd, cfg)
    tokens = np.random.RandomState(0).randint(0, 128, size=(2, 17)).astype(np.int32)
    ours, _ = Llama(cfg).apply({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        ref = model(torch.from_numpy(tokens).long()).logits.numpy()
    assert np.max(np.abs(np.asarray(ours) - ref)) <= 1e-4


def test_state_dict_round_trip_is_exact():
    model = tiny_hf_model(kv=2)
    cfg = hf.config_from_hf(model.config.to_dict())
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    back = hf.hf_state_dict_from_params(hf.params_from_hf_state_dict(sd, cfg), cfg)
    assert sorted(back) == sorted(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype and np.array_equal(back[k], sd[k]), k


def test_config_round_trip_through_transformers():
    cfg = hf.config_from_hf(tiny_hf_model(kv=1, theta=2500.0).config.to_dict())
    conf = transformers.LlamaConfig.from_dict(hf.hf_config_dict(cfg))
    assert hf.config_from_hf(conf.to_dict()) == cfg


def test_bad_configs_are_named():
    good = hf.hf_config_dict(hf.config_from_hf(tiny_hf_model().config.to_dict()))
    with pytest.raises(hf.ConversionError, match="x/config.json: unknown architecture"):
        hf.config_from_hf({**good, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "x/config.json")
    with pytest.raises(hf.ConversionError, match="rope scaling 'llama3'"):
        hf.config_from_hf({**good, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(hf.ConversionError, match="missing field 'hidden_size'"):
        hf.config_from_hf({k: v for k, v in good.items() if k != "hidden_size"})


def test_missing_and_misshapen_tensors_are_named():
    model = tiny_hf_model()
    cfg = hf.config_from_hf(model.config.to_dict())
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(hf.ConversionError, match=r"model.layers.1.mlp.up_proj.weight"):
        hf.params_from_hf_state_dict({k: v for k, v in sd.items() if k != "model.layers.1.mlp.up_proj.weight"}, cfg)
    sd["model.norm.weight"] = sd["model.norm.weight"][:-1]
    with pytest.raises(hf.ConversionError, match=r"'model.norm.weight' has shape \(63,\)"):
        hf.params_from_hf_state_dict(sd, cfg)
