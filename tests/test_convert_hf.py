"""HF <-> camel_jax mapping: logits parity with transformers' LlamaForCausalLM on tiny random models."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from camel_jax.convert import hf  # noqa: E402
from camel_jax.model.llama import Llama  # noqa: E402


def tiny_hf_model(kv=2, theta=5000.0, tie=False, seed=0, vocab=128):
    torch.manual_seed(seed)
    conf = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
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


# ------------------------------------------------------------------------------------- import-hf / export-hf

from camel_jax import params_io  # noqa: E402
from camel_jax.convert.__main__ import main as convert_main  # noqa: E402
from camel_jax.convert.safetensors_io import SafetensorsFile  # noqa: E402


def save_hf(model, path, fmt):
    """A HF folder as published: config.json plus safetensors (save_pretrained) or pickled .bin state dicts,
    in one file or sharded with an index ("-sharded")."""
    if fmt.startswith("safetensors"):
        model.save_pretrained(path, max_shard_size="50KB" if fmt.endswith("-sharded") else "5GB")
        assert (path / "model.safetensors.index.json").is_file() == fmt.endswith("-sharded")
        return path
    path.mkdir()
    model.config.save_pretrained(path)
    sd = model.state_dict()
    if not fmt.endswith("-sharded"):  # "bin-legacy": torch's pre-1.6 format, which cannot be memory-mapped
        torch.save(sd, path / "pytorch_model.bin", _use_new_zipfile_serialization=fmt != "bin-legacy")
        return path
    names = list(sd)
    parts = [names[: len(names) // 2], names[len(names) // 2:]]
    wmap = {}
    for k, part in enumerate(parts):
        fname = f"pytorch_model-{k + 1:05d}-of-00002.bin"
        torch.save({n: sd[n] for n in part}, path / fname)
        wmap.update({n: fname for n in part})
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    return path


def read_export(hf_dir):
    out = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        st = SafetensorsFile(str(f))
        out.update({k: np.array(st.get(k)) for k in st.keys()})
    return out


@pytest.mark.parametrize("fmt", ["safetensors", "safetensors-sharded", "bin", "bin-sharded", "bin-legacy"])
def test_import_then_export_is_bit_exact_and_loads_in_transformers(tmp_path, fmt, capsys):
    model = tiny_hf_model(kv=2)
    src = save_hf(model, tmp_path / "hf", fmt)
    assert convert_main(["import-hf", str(src), str(tmp_path / "ckpt")]) == 0
    assert "has no tokenizer files" in capsys.readouterr().err
    # 64-row layer tensors are 16 KiB in fp32: a 40 KB limit forces several shards and an index.
    assert convert_main(["export-hf", str(tmp_path / "ckpt"), str(tmp_path / "out"), "--max_shard_size", "40KB"]) == 0
    out = tmp_path / "out"
    assert (out / "model.safetensors.index.json").is_file() and len(list(out.glob("model-*-of-*.safetensors"))) > 2
    exported, original = read_export(out), {k: v.numpy() for k, v in model.state_dict().items()}
    assert sorted(exported) == sorted(original)
    for k in original:
        assert exported[k].dtype == np.float32 and np.array_equal(exported[k], original[k]), k
    reloaded = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    tokens = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert torch.equal(reloaded(tokens).logits, model(tokens).logits)


@pytest.mark.parametrize("tie", [False, True])
def test_odd_vocabulary_is_padded_on_import_and_trimmed_on_export(tmp_path, tie):
    """TÜLU's 32,001 tokens (LLaMA's 32,000 + <pad>) in miniature: 257 stored as 384 rows, zero past 257; the
    logits match transformers' over the 257 real tokens, and import -> export is bit-exact with vocab_size 257."""
    model = tiny_hf_model(kv=2, tie=tie, vocab=257)
    src = save_hf(model, tmp_path / "hf", "safetensors")
    assert convert_main(["import-hf", str(src), str(tmp_path / "ckpt")]) == 0
    params, cfg = params_io.load_params(str(tmp_path / "ckpt"))
    assert (cfg.vocab_size, cfg.padded_vocab) == (257, 384)
    emb = params["embed"]["embedding"]
    assert emb.shape == (384, 64) and not emb[257:].any()
    if not tie:
        assert params["lm_head"]["kernel"].shape == (64, 384) and not params["lm_head"]["kernel"][:, 257:].any()
    tokens = np.random.RandomState(0).randint(0, 257, size=(2, 9)).astype(np.int32)
    tokens[0, 3] = 256  # the "<pad>" id: a real token of the checkpoint
    ours, _ = Llama(cfg.replace(dtype="float32")).apply({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        ref = model(torch.from_numpy(tokens).long()).logits.numpy()
    assert ours.shape == ref.shape == (2, 9, 257) and np.max(np.abs(np.asarray(ours) - ref)) <= 1e-4
    assert convert_main(["export-hf", str(tmp_path / "ckpt"), str(tmp_path / "out")]) == 0
    exported, original = read_export(tmp_path / "out"), {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(original) - set(exported) == ({"lm_head.weight"} if tie else set())
    for k in exported:
        assert exported[k].dtype == np.float32 and np.array_equal(exported[k], original[k]), k
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert reloaded.config.vocab_size == 257
    t = torch.from_numpy(tokens).long()
    with torch.no_grad():
        assert torch.equal(reloaded(t).logits, model(t).logits)


def test_bf16_export_matches_torch_rounding(tmp_path):
    model = tiny_hf_model(kv=1, tie=True)
    src = save_hf(model, tmp_path / "hf", "safetensors")
    assert convert_main(["import-hf", str(src), str(tmp_path / "ckpt")]) == 0
    assert convert_main(["export-hf", str(tmp_path / "ckpt"), str(tmp_path / "out"), "--dtype", "bfloat16"]) == 0
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out")
    assert reloaded.dtype == torch.bfloat16 and reloaded.config.tie_word_embeddings
    ref = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    for k, v in reloaded.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_bf16_hf_input_imports_exactly(tmp_path):
    model = tiny_hf_model(kv=2).to(torch.bfloat16)
    src = save_hf(model, tmp_path / "hf", "safetensors")
    assert convert_main(["import-hf", str(src), str(tmp_path / "ckpt")]) == 0
    params, _ = params_io.load_params(str(tmp_path / "ckpt"))
    q = params["layers"]["attn"]["q"]["kernel"][1]
    assert q.dtype == np.float32
    assert np.array_equal(q, model.model.layers[1].self_attn.q_proj.weight.detach().float().numpy().T)


def test_tokenizer_travels_and_autotokenizer_gives_llama_ids(tmp_path, shared_data):
    import shutil

    sp_model = shared_data / "llama_tokenizer" / "tokenizer.model"
    src = save_hf(tiny_hf_model(), tmp_path / "hf", "safetensors")
    shutil.copy(sp_model, src / "tokenizer.model")  # a bare tokenizer.model, as Meta ships it
    assert convert_main(["import-hf", str(src), str(tmp_path / "ckpt")]) == 0
    assert (tmp_path / "ckpt" / "tokenizer" / "tokenizer.model").read_bytes() == sp_model.read_bytes()
    assert convert_main(["export-hf", str(tmp_path / "ckpt"), str(tmp_path / "out")]) == 0
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok("The capital of France is")["input_ids"] == [1, 450, 7483, 310, 3444, 338]


def test_export_accepts_a_training_checkpoint(tmp_path):
    from test_params_io import CFG, write_training_run

    saved = write_training_run(str(tmp_path / "run"), [3])
    assert convert_main(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    exported = read_export(tmp_path / "out")
    assert np.array_equal(exported["model.layers.1.mlp.down_proj.weight"],
                          saved[3]["layers"]["mlp"]["down"]["kernel"][1].T)
    assert hf.config_from_hf(transformers.AutoConfig.from_pretrained(tmp_path / "out").to_dict()) == \
        CFG.replace(dtype="bfloat16")


class _Evil:
    """Unpickling this would create a file: loading a .bin must never execute it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_in_bin_is_refused_not_run(tmp_path, capsys):
    src = save_hf(tiny_hf_model(), tmp_path / "hf", "bin")
    sd = torch.load(src / "pytorch_model.bin", weights_only=True)
    torch.save({**sd, "payload": _Evil(str(tmp_path / "pwned"))}, src / "pytorch_model.bin")
    assert convert_main(["import-hf", str(src), str(tmp_path / "ckpt")]) == 2
    assert f"{src}/pytorch_model.bin: cannot be read safely" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_bad_inputs_name_the_file(tmp_path, capsys):
    model = tiny_hf_model()
    src = save_hf(model, tmp_path / "hf", "safetensors")
    (src / "config.json").rename(src / "config.bak")
    assert convert_main(["import-hf", str(src), str(tmp_path / "c1")]) == 2
    assert f"{src}/config.json: missing" in capsys.readouterr().err
    conf = json.loads((src / "config.bak").read_text())
    (src / "config.json").write_text(json.dumps({**conf, "model_type": "mistral", "architectures": ["Mistral"]}))
    assert convert_main(["import-hf", str(src), str(tmp_path / "c2")]) == 2
    assert f"{src}/config.json: unknown architecture" in capsys.readouterr().err
    (src / "config.json").write_text(json.dumps(conf))
    sd = {k: v for k, v in model.state_dict().items() if k != "model.layers.0.self_attn.v_proj.weight"}
    import safetensors.torch

    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, src / "model.safetensors",
                                metadata={"format": "pt"})
    assert convert_main(["import-hf", str(src), str(tmp_path / "c3")]) == 2
    assert f"{src}/model.safetensors: missing tensor 'model.layers.0.self_attn.v_proj.weight'" in \
        capsys.readouterr().err
    assert convert_main(["export-hf", str(tmp_path / "nothing"), str(tmp_path / "o")]) == 2
    assert f"{tmp_path}/nothing is not a camel_jax checkpoint" in capsys.readouterr().err
