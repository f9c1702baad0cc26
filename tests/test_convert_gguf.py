"""SmolLM2-135M-Instruct from its GGUF through `convert.gguf`: camel_jax's logits equal transformers' on the same
dequantized fp32 weights, and its greedy ChatML answer is the known one.

Tolerance, measured: log-probs within 1.5e-4 (9.9e-5 worst on these prompts on one machine, 1.07e-4 on an AMD EPYC
host: XLA:CPU's and PyTorch's kernels round differently per CPU, so 1e-4 sat on the edge); raw logits within 2e-4
(1.6e-4 worst, max |logit| ~27-36, i.e. 6e-6 relative). That is fp32 rounding over 30 layers, not a formula difference: with fp64
weights and compute camel_jax matches transformers' fp64 forward within 1.4e-5 (the final fp32 cast); against
the fp64 forward, fp32 camel_jax is off by 1.8e-4 and fp32 PyTorch by 4e-5-8.5e-5."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from smollm2_util import FRANCE, camel_params, hf_model  # noqa: E402

from camel_jax.generate import greedy_generate  # noqa: E402
from camel_jax.model.llama import Llama  # noqa: E402
from camel_jax.model.tokenizer import load_tokenizer  # noqa: E402

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a land far away, there"]


def test_config_and_tokenizer(smollm2):
    _, cfg = camel_params(smollm2.ckpt_dir)
    assert (cfg.vocab_size, cfg.num_layers, cfg.num_heads, cfg.kv_heads, cfg.rope_theta, cfg.tie_embeddings) == (
        49152, 30, 9, 3, 100000.0, True)
    tok = load_tokenizer(smollm2.tokenizer_dir)
    assert (tok.bos_id, tok.eos_id, tok.eos_token) == (1, 2, "<|im_end|>")
    hf_tok = transformers.AutoTokenizer.from_pretrained(smollm2.tokenizer_dir)
    assert "<|im_start|>" in hf_tok.chat_template  # the GGUF's ChatML template survives the import


def test_logits_match_transformers(smollm2):
    params, cfg = camel_params(smollm2.ckpt_dir)
    tok = load_tokenizer(smollm2.tokenizer_dir)
    model = hf_model(smollm2.hf_dir)
    worst = worst_lp = 0.0
    for text in PROMPTS:
        ids = np.asarray([tok.encode(text)], np.int32)
        ours, _ = Llama(cfg).apply({"params": params}, jnp.asarray(ids))
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids.astype(np.int64))).logits.numpy()
        ours = np.asarray(ours)
        worst = max(worst, float(np.max(np.abs(ours - ref))))
        lp = np.asarray(jax.nn.log_softmax(ours, axis=-1)) - torch.log_softmax(torch.from_numpy(ref), -1).numpy()
        worst_lp = max(worst_lp, float(np.max(np.abs(lp))))
    assert worst <= 2e-4 and worst_lp <= 1.5e-4, (worst, worst_lp)


def test_greedy_chatml_answer(smollm2):
    params, cfg = camel_params(smollm2.ckpt_dir)
    tok = load_tokenizer(smollm2.tokenizer_dir)
    hf_tok = transformers.AutoTokenizer.from_pretrained(smollm2.tokenizer_dir)
    prompt = hf_tok.apply_chat_template([{"role": "user", "content": FRANCE}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    out = greedy_generate(params, cfg, [prompt], 24, tok.eos_id)[0]
    assert out[-1] == tok.eos_id
    assert tok.decode(out[:-1]).strip() == "The capital of France is Paris."


def test_cli_missing_gguf_is_one_line_exit_2(tmp_path, capsys):
    from camel_jax.convert.__main__ import main

    assert main(["import-hf", str(tmp_path), str(tmp_path / "out"), "--gguf_file", "nope.gguf"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m camel_jax.convert import-hf: error: ") and "nope.gguf" in err and "\n" not in err
