"""llama2.c import: layout against an independent numpy llama2.c forward pass (Meta's interleaved rotary), the real
stories260K decoding as published, and tokenizer.bin -> SentencePiece fidelity."""
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

from camel_jax import params_io
from camel_jax.convert import llama2c
from camel_jax.convert.__main__ import main as convert_main
from camel_jax.generate import greedy_generate
from camel_jax.model.llama import Llama
from camel_jax.model.tokenizer import load_tokenizer

ASSETS = os.path.join(os.path.dirname(llama2c.__file__), "..", "assets", "stories260k")
STORIES_BIN, TOK512_BIN = os.path.join(ASSETS, "stories260K.bin"), os.path.join(ASSETS, "tok512.bin")


def write_llama2c(path, dim=32, hidden=48, layers=2, heads=4, kv=2, vocab=40, seq=16, shared=False, seed=0):
    """A random llama2.c legacy model.bin; returns its arrays by llama2.c name."""
    rng = np.random.RandomState(seed)
    hd, kvd = dim // heads, kv * dim // heads
    shapes = [("emb", (vocab, dim)), ("rms_att", (layers, dim)), ("wq", (layers, dim, dim)),
              ("wk", (layers, kvd, dim)), ("wv", (layers, kvd, dim)), ("wo", (layers, dim, dim)),
              ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
              ("w3", (layers, hidden, dim)), ("rms_final", (dim,)), ("fr", (seq, hd // 2)), ("fi", (seq, hd // 2))]
    shapes += [] if shared else [("wcls", (vocab, dim))]
    w = {n: (rng.uniform(0.5, 1.5, s) if n.startswith("rms") else rng.normal(0, 0.3, s)).astype(np.float32)
         for n, s in shapes}
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq))
        for n, _ in shapes:
            f.write(w[n].tobytes())
    return w


def llama2c_reference_logits(w, tokens, heads, kv):
    """run.c's forward pass in numpy: interleaved (adjacent-pair) rotary, theta 1e4, eps 1e-5."""
    def rmsnorm(x, g):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-5) * g

    def rope(x, nh):  # x [T, nh*hd]: rotate pairs (2i, 2i+1) of each head by pos * 1e4^(-2i/hd)
        t, hd = x.shape[0], x.shape[1] // nh
        x = x.reshape(t, nh, hd // 2, 2)
        ang = np.arange(t)[:, None] * 10000.0 ** (-np.arange(0, hd, 2) / hd)[None]
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        out = np.stack([x[..., 0] * c - x[..., 1] * s, x[..., 0] * s + x[..., 1] * c], -1)
        return out.reshape(t, nh * hd)

    x = w["emb"][tokens].astype(np.float64)
    t, dim = x.shape
    hd = dim // heads
    for l in range(w["wq"].shape[0]):
        xb = rmsnorm(x, w["rms_att"][l])
        q, k, v = rope(xb @ w["wq"][l].T, heads), rope(xb @ w["wk"][l].T, kv), xb @ w["wv"][l].T
        out = np.zeros_like(q)
        for h in range(heads):
            g = h // (heads // kv)
            s = q[:, h * hd:(h + 1) * hd] @ k[:, g * hd:(g + 1) * hd].T / np.sqrt(hd)
            s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            out[:, h * hd:(h + 1) * hd] = (p / p.sum(-1, keepdims=True)) @ v[:, g * hd:(g + 1) * hd]
        x = x + out @ w["wo"][l].T
        xb = rmsnorm(x, w["rms_ffn"][l])
        h1, h3 = xb @ w["w1"][l].T, xb @ w["w3"][l].T
        x = x + (h1 / (1 + np.exp(-h1)) * h3) @ w["w2"][l].T
    return rmsnorm(x, w["rms_final"]) @ w.get("wcls", w["emb"]).T


@pytest.mark.parametrize("shared,heads,kv", [(False, 4, 2), (True, 4, 4), (False, 4, 1)])
def test_logits_match_a_llama2c_forward(tmp_path, shared, heads, kv):
    w = write_llama2c(tmp_path / "m.bin", heads=heads, kv=kv, shared=shared)
    params, cfg = llama2c.read_model(str(tmp_path / "m.bin"))
    assert cfg.tie_embeddings == shared and ("lm_head" in params) == (not shared) and cfg.kv_heads == kv
    tokens = np.array([[1, 5, 9, 30, 2, 17, 3, 11, 39, 0, 7, 8]], np.int32)
    ours, _ = Llama(cfg.replace(dtype="float32")).apply({"params": params}, jnp.asarray(tokens))
    ref = llama2c_reference_logits(w, tokens[0], heads, kv)
    assert np.max(np.abs(np.asarray(ours)[0] - ref)) < 1e-4


@pytest.mark.parametrize("shared", [False, True])
def test_odd_vocabulary_gets_zero_rows_up_to_the_padded_size(tmp_path, shared):
    w = write_llama2c(tmp_path / "m.bin", shared=shared)  # 40 tokens: 128 rows, the real ones bit for bit
    params, cfg = llama2c.read_model(str(tmp_path / "m.bin"))
    assert (cfg.vocab_size, cfg.padded_vocab) == (40, 128)
    emb = params["embed"]["embedding"]
    assert emb.shape == (128, 32) and np.array_equal(emb[:40], w["emb"]) and not emb[40:].any()
    if not shared:
        head = params["lm_head"]["kernel"]
        assert head.shape == (32, 128) and not head[:, 40:].any()
        assert np.array_equal(head[:, :40], w["wcls"].T)


def test_stories260k_decodes_as_published(tmp_path):
    assert convert_main(["import-llama2c", STORIES_BIN, TOK512_BIN, str(tmp_path / "ckpt")]) == 0
    params, cfg = params_io.load_params(str(tmp_path / "ckpt"))
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.num_heads, cfg.kv_heads, cfg.vocab_size,
            cfg.max_seq_len, cfg.tie_embeddings) == (64, 172, 5, 8, 4, 512, 512, True)
    assert cfg.num_params() == 260032  # "260K"
    tok = load_tokenizer(str(tmp_path / "ckpt" / "tokenizer"))
    (ids,) = greedy_generate(params, cfg.replace(dtype="float32"), [[tok.bos_id]], max_new_tokens=24)
    assert tok.decode(ids).startswith("Once upon a time, there was a little girl named Lily.")
    sentence = "Once upon a time, there was a little girl named Lily."
    assert tok.encode(sentence) == ids[:len(tok.encode(sentence))]  # the tokenizer speaks the model's language
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.id_to_piece(3), tok.id_to_piece(259)) == \
        (512, 1, 2, "<0x00>", "▁t")
    assert tok.decode(tok.encode("Tom's 3 cats ate 42 fish. Ünïcode ☃!")) == "Tom's 3 cats ate 42 fish. Ünïcode ☃!"


def test_llama_tokenizer_bin_rebuilds_llama_tokenizer_model(shared_data):
    """LLaMA's own tokenizer.bin (llama2.c export) becomes a model identical in pieces, scores, types and ids."""
    ref = spm.SentencePieceProcessor(model_file=str(shared_data / "llama_tokenizer" / "tokenizer.model"))
    pieces = llama2c.read_tokenizer(str(shared_data / "llama_tokenizer" / "tokenizer.bin"))
    ours = spm.SentencePieceProcessor(model_proto=llama2c.sentencepiece_model(pieces))
    assert ours.get_piece_size() == ref.get_piece_size() == 32000
    for i in range(32000):
        assert (ours.id_to_piece(i), ours.get_score(i), ours.is_byte(i), ours.is_control(i), ours.is_unknown(i)) \
            == (ref.id_to_piece(i), ref.get_score(i), ref.is_byte(i), ref.is_control(i), ref.is_unknown(i)), i
    for text in ["The capital of France is", "<|user|>\nHi  there\n<|assistant|>\n", "def f(x):\n    return x  # 12",
                 "naïve café 日本語 🦙", "  two leading spaces"]:
        assert ours.encode(text) == ref.encode(text), text


def test_permute_rotary_is_transformers_permute():
    torch = pytest.importorskip("torch")
    w = np.random.RandomState(0).normal(size=(24, 5)).astype(np.float32)

    def hf_permute(t, n_heads, dim1, dim2):  # transformers' convert_llama_weights_to_hf.permute
        return t.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)

    assert np.array_equal(llama2c.permute_rotary(w, 3), hf_permute(torch.from_numpy(w), 3, 24, 5).numpy())


def test_bad_files_are_named(tmp_path):
    write_llama2c(tmp_path / "m.bin")
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-4])
    with pytest.raises(llama2c.Llama2cError, match=r"short.bin: .* bytes, but its header .* implies"):
        llama2c.read_model(str(tmp_path / "short.bin"))
    (tmp_path / "v1.bin").write_bytes(struct.pack("<I", 0x616B3432) + data[4:])
    with pytest.raises(llama2c.Llama2cError, match=r"v1.bin: llama2.c version-1/2 export"):
        llama2c.read_model(str(tmp_path / "v1.bin"))
    with pytest.raises(llama2c.Llama2cError, match=r"tok512.bin: 512 tokens, the model has vocab_size 40"):
        llama2c.import_llama2c(str(tmp_path / "m.bin"), TOK512_BIN, str(tmp_path / "ckpt"))
    (tmp_path / "tok.bin").write_bytes(open(TOK512_BIN, "rb").read()[:95])
    with pytest.raises(llama2c.Llama2cError, match=r"tok.bin: token \d+ claims \d+ bytes"):
        llama2c.read_tokenizer(str(tmp_path / "tok.bin"))
    assert convert_main(["import-llama2c", str(tmp_path / "nope.bin"), TOK512_BIN, str(tmp_path / "c")]) == 2


def test_stories260k_exports_to_transformers(tmp_path):
    """llama2.c -> camel_jax -> HF: transformers greedy-decodes the same story and AutoTokenizer gives our ids."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    assert convert_main(["import-llama2c", STORIES_BIN, TOK512_BIN, str(tmp_path / "ckpt")]) == 0
    assert convert_main(["export-hf", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 0
    params, cfg = params_io.load_params(str(tmp_path / "ckpt"))
    (ours,) = greedy_generate(params, cfg.replace(dtype="float32"), [[1]], max_new_tokens=24)
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        theirs = model.generate(torch.tensor([[1]]), max_new_tokens=24, do_sample=False)[0, 1:].tolist()
    assert theirs == ours
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    sp = load_tokenizer(str(tmp_path / "ckpt" / "tokenizer"))
    text = "Once upon a time, Tom saw 3 big dogs."
    assert hf_tok(text)["input_ids"] == sp.encode(text, add_bos=True)
