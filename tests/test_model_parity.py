"""Logits parity with transformers' PyTorch LlamaForCausalLM on padded batches (fp32, max abs diff <= 1e-4).

Unpadded parity over MHA/GQA and rope_theta is in test_convert_hf.py; this adds left and right padding, where both
sides get the same attention mask and the same position ids (0 at each row's first real token)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from camel_jax.convert import hf  # noqa: E402
from camel_jax.model.llama import Llama, positions_from_mask  # noqa: E402


@pytest.mark.parametrize("kv", [4, 2, 1])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_logits_match(kv, side):
    torch.manual_seed(kv)
    conf = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=kv, max_position_embeddings=64,
                                    rope_theta=20000.0, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(conf).eval()
    cfg = hf.config_from_hf(model.config.to_dict(), dtype="float32")
    params = hf.params_from_hf_state_dict({k: v.numpy() for k, v in model.state_dict().items()}, cfg)

    rng = np.random.RandomState(kv)
    lengths = [12, 7, 3]
    tokens = np.zeros((3, 12), np.int64)
    mask = np.zeros((3, 12), np.int64)
    for r, n in enumerate(lengths):
        sl = slice(12 - n, 12) if side == "left" else slice(0, n)
        tokens[r, sl] = rng.randint(3, 96, n)
        mask[r, sl] = 1
    pos = np.array(positions_from_mask(jnp.asarray(mask)))  # a writable copy for torch
    ours, _ = Llama(cfg).apply({"params": params}, jnp.asarray(tokens, jnp.int32), positions=jnp.asarray(pos),
                               segment_ids=jnp.asarray(mask, jnp.int32))
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask),
                    position_ids=torch.from_numpy(pos).long()).logits.numpy()
    real = mask.astype(bool)
    assert np.max(np.abs(np.asarray(ours)[real] - ref[real])) <= 1e-4
