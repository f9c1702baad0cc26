"""The model layer: presets (`config`), Flax LLaMA (`layers`, `attention`, `splash`, `llama`), how arrays lie on a
mesh (`partition`, `mesh`) and the tokenizer. Imports nothing else of camel_jax: data, train, convert and
inference all build on it."""
