"""llama2.c checkpoints (legacy "version 0" model.bin) and tokenizer.bin -> a camel_jax checkpoint.

model.bin: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), then fp32 torch-layout
([out, in]) arrays: token_embedding [V,D], rms_att [L,D], wq [L,D,D], wk [L,kvD,D], wv [L,kvD,D], wo [L,D,D],
rms_ffn [L,D], w1 [L,F,D], w2 [L,D,F], w3 [L,F,D], rms_final [D], freq_cis_real/imag [seq_len, hd/2] (skipped:
recomputed), and wcls [V,D] only when vocab_size is negative (an unshared classifier).
  * q/k rows are in Meta's interleaved rotary layout (llama2.c rotates adjacent pairs); they are permuted into
    camel_jax's rotate_half layout exactly as transformers' convert_llama_weights_to_hf `permute` does.
  * A shared classifier stays shared: tie_embeddings=True (one matrix, as the model was trained); an unshared one
    becomes lm_head.
  * rms_norm_eps 1e-5 and rope theta 10000 are llama2.c's fixed values (run.c, model.py).
  * The embedding (and classifier) get zero rows up to `padded_vocab` (model/vocab.py).
tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, UTF-8 bytes, with '▁' written
as ' ' and BOS/EOS as '\\n<s>\\n' / '\\n</s>\\n'. It is rebuilt as a SentencePiece BPE model: byte-fallback
pieces <0xNN> as BYTE, <unk> UNKNOWN, <s>/</s> CONTROL, identity normalisation with a dummy prefix and no
whitespace collapsing (as run.c encodes, and as LLaMA's own tokenizer.model is configured).
"""
from __future__ import annotations

import os
import re
import struct
import tempfile

import numpy as np

from camel_jax import params_io
from camel_jax.model.config import LlamaConfig
from camel_jax.model.vocab import pad_vocab

HEADER = struct.Struct("<7i")
LLAMA2C_V1_MAGIC = 0x616B3432  # "ak42": llama2.c's newer export formats, not the legacy one handled here
_BYTE_PIECE = re.compile(r"^<0x[0-9A-F]{2}>$")


class Llama2cError(ValueError):
    """Bad llama2.c input; the message names the file."""


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """[n_heads*hd, in] rows from interleaved pairs (Meta) to rotate_half halves (HF, camel_jax), per head."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, hd // 2, 2, in_dim).transpose(0, 2, 1, 3).reshape(out_dim, in_dim)


def read_header(path: str) -> tuple[LlamaConfig, bool]:
    """(config, shared classifier) from a llama2.c model.bin header."""
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise Llama2cError(f"{path}: too short for a llama2.c header ({len(raw)} bytes)")
    if struct.unpack("<I", raw[:4])[0] == LLAMA2C_V1_MAGIC:
        raise Llama2cError(f"{path}: llama2.c version-1/2 export (magic 'ak42'); re-export with "
                           f"`export.py --version 0` (the legacy format)")
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = HEADER.unpack(raw)
    if min(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len) <= 0 or dim % heads:
        raise Llama2cError(f"{path}: implausible llama2.c header dim={dim} hidden_dim={hidden} n_layers={layers} "
                           f"n_heads={heads} n_kv_heads={kv_heads} vocab_size={vocab} seq_len={seq_len}")
    cfg = LlamaConfig(vocab_size=abs(vocab), hidden_size=dim, intermediate_size=hidden, num_layers=layers,
                      num_heads=heads, num_kv_heads=None if kv_heads == heads else kv_heads, max_seq_len=seq_len,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_embeddings=vocab > 0, bos_token_id=1,
                      eos_token_id=2)
    try:
        return cfg.validate(), vocab > 0
    except ValueError as e:
        raise Llama2cError(f"{path}: {e}") from None


def read_model(path: str) -> tuple[dict, LlamaConfig]:
    """Parameter tree (numpy fp32, scanned layout) and config from a llama2.c legacy model.bin."""
    cfg, shared = read_header(path)
    d, f, L, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.vocab_size
    hd, kvd = cfg.dim_per_head, cfg.kv_heads * cfg.dim_per_head
    layout = [("embed", (v, d)), ("rms_att", (L, d)), ("wq", (L, d, d)), ("wk", (L, kvd, d)), ("wv", (L, kvd, d)),
              ("wo", (L, d, d)), ("rms_ffn", (L, d)), ("w1", (L, f, d)), ("w2", (L, d, f)), ("w3", (L, f, d)),
              ("rms_final", (d,)), ("freq_real", (cfg.max_seq_len, hd // 2)),
              ("freq_imag", (cfg.max_seq_len, hd // 2))] + ([] if shared else [("wcls", (v, d))])
    want = HEADER.size + 4 * sum(int(np.prod(s)) for _, s in layout)
    have = os.path.getsize(path)
    if have != want:
        raise Llama2cError(f"{path}: {have:,} bytes, but its header (dim={d}, hidden_dim={f}, n_layers={L}, "
                           f"vocab_size={v if shared else -v}, seq_len={cfg.max_seq_len}) implies {want:,}")
    mm = np.memmap(path, dtype="<f4", mode="r", offset=HEADER.size)
    w, off = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape))
        w[name] = mm[off:off + n].reshape(shape)
        off += n
    t = lambda x: np.ascontiguousarray(np.swapaxes(x, -1, -2), dtype=np.float32)  # [.., out, in] -> [.., in, out]
    vp = cfg.padded_vocab
    params = {
        "embed": {"embedding": pad_vocab(w["embed"], vp, 0, np.float32)},
        "layers": {
            "attn_norm": {"scale": np.array(w["rms_att"], np.float32)},
            "mlp_norm": {"scale": np.array(w["rms_ffn"], np.float32)},
            "attn": {"q": {"kernel": t(np.stack([permute_rotary(x, cfg.num_heads) for x in w["wq"]]))},
                     "k": {"kernel": t(np.stack([permute_rotary(x, cfg.kv_heads) for x in w["wk"]]))},
                     "v": {"kernel": t(w["wv"])}, "o": {"kernel": t(w["wo"])}},
            "mlp": {"gate": {"kernel": t(w["w1"])}, "down": {"kernel": t(w["w2"])}, "up": {"kernel": t(w["w3"])}},
        },
        "final_norm": {"scale": np.array(w["rms_final"], np.float32)},
    }
    if not shared:
        params["lm_head"] = {"kernel": pad_vocab(np.swapaxes(w["wcls"], 0, 1), vp, 1, np.float32)}
    del mm
    return params, cfg


def read_tokenizer(path: str, vocab_size: int | None = None) -> list[tuple[str, float]]:
    """(piece, score) per id from a llama2.c tokenizer.bin, with '▁' restored and BOS/EOS named <s>/</s>."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise Llama2cError(f"{path}: too short for a llama2.c tokenizer")
    off, pieces = 4, []
    while off < len(data):
        if off + 8 > len(data):
            raise Llama2cError(f"{path}: truncated at byte {off} (token {len(pieces)})")
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        if n < 0 or off + n > len(data):
            raise Llama2cError(f"{path}: token {len(pieces)} claims {n} bytes at byte {off}; file is truncated")
        try:
            text = data[off:off + n].decode("utf-8")
        except UnicodeDecodeError:
            raise Llama2cError(f"{path}: token {len(pieces)} is not UTF-8") from None
        off += n
        text = {"\n<s>\n": "<s>", "\n</s>\n": "</s>"}.get(text, text)
        pieces.append((text.replace(" ", "\u2581"), float(score)))
    if vocab_size is not None and len(pieces) != vocab_size:
        raise Llama2cError(f"{path}: {len(pieces)} tokens, the model has vocab_size {vocab_size}")
    return pieces


def sentencepiece_model(pieces: list[tuple[str, float]], source: str = "tokenizer.bin") -> bytes:
    """A serialized SentencePiece BPE ModelProto with these pieces and scores, in id order."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    names = [p for p, _ in pieces]
    for special in ("<unk>", "<s>", "</s>"):
        if special not in names:
            raise Llama2cError(f"{source}: no {special} token")
    if len(set(names)) != len(names):
        dup = sorted({p for p in names if names.count(p) > 1})[:5]
        raise Llama2cError(f"{source}: duplicate pieces {dup}")
    m = pb.ModelProto()
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(pieces)
    ts.byte_fallback = any(_BYTE_PIECE.match(p) for p in names)
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = names.index("<unk>"), names.index("<s>"), names.index("</s>"), -1
    ns = m.normalizer_spec
    ns.name, ns.add_dummy_prefix, ns.remove_extra_whitespaces, ns.escape_whitespaces = "identity", True, False, True
    T = pb.ModelProto.SentencePiece
    for piece, score in pieces:
        kind = (T.UNKNOWN if piece == "<unk>" else T.CONTROL if piece in ("<s>", "</s>")
                else T.BYTE if _BYTE_PIECE.match(piece) else T.NORMAL)
        m.pieces.add(piece=piece, score=score, type=kind)
    return m.SerializeToString()


def import_llama2c(model_bin: str, tokenizer_bin: str, ckpt_dir: str) -> LlamaConfig:
    """model.bin + tokenizer.bin -> CKPT_DIR/{model_config.json, params/, tokenizer/tokenizer.model}."""
    for p in (model_bin, tokenizer_bin):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: no such file")
    params, cfg = read_model(model_bin)
    spm_bytes = sentencepiece_model(read_tokenizer(tokenizer_bin, cfg.vocab_size), tokenizer_bin)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "tokenizer.model"), "wb") as f:
            f.write(spm_bytes)
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "tokenizer.model"))
        if (sp.bos_id(), sp.eos_id()) != (cfg.bos_token_id, cfg.eos_token_id):
            cfg = cfg.replace(bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id())
        params_io.save_params(ckpt_dir, params, cfg, tokenizer_dir=tmp)
    return cfg
