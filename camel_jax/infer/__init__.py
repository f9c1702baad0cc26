"""Inference on camel_jax models: chat formats (chat.py) and log-likelihood scoring (scoring.py); the engine,
sampling and the server build on them (issue 10)."""
