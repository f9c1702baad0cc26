"""Inference on camel_jax models: the continuous-batching KV-cache engine (engine.py, decode.py, sampling.py),
chat formats (chat.py) and log-likelihood scoring (scoring.py); the server and the evaluation suite build on them."""
