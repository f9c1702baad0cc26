"""Checkpoint conversion into and out of camel_jax: `python -m camel_jax.convert {import-hf,export-hf,import-llama2c}`.

Rotary layout. Inside camel_jax, q/k use Hugging Face's *rotate_half* layout: within each head, dimension i is
rotated together with dimension i + head_dim/2 (layers.apply_rotary). Meta's original LLaMA code and llama2.c
use the *interleaved* layout: dimensions 2i and 2i+1 form a pair (a complex number). The two differ only by a
fixed permutation of each head's q/k output rows, so each import maps to ours as follows:

  * Hugging Face (import-hf / export-hf, convert.hf): already rotate_half, so no permutation. Every torch Linear
    weight [out, in] is transposed into a Flax kernel [in, out]; norms and the embedding copy as they are; layers
    are stacked on a leading axis. Both directions are exact (fp32 round trip is bit-identical).
  * llama2.c (import-llama2c, convert.llama2c) and Meta .pth: interleaved, so q and k rows are permuted per head
    (k with num_kv_heads) exactly as transformers' convert_llama_weights_to_hf `permute` does:
    w.reshape(heads, hd/2, 2, in).transpose(0, 2, 1, 3).reshape(heads*hd, in), then transposed like HF.
    v, o and the MLP are only transposed. The result equals what Meta->HF conversion produces, so a llama2.c
    model exported with export-hf is an ordinary HF LLaMA.

Files: convert.hf (HF names/shapes, config mapping, import/export), convert.safetensors_io (the
safetensors library over numpy, bfloat16 included), convert.llama2c (model.bin + tokenizer.bin -> checkpoint, tokenizer
rebuilt as a SentencePiece model). The checkpoint folder format is camel_jax.params_io's.
"""
