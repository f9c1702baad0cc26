"""Inference: the continuous-batching KV-cache engine (engine.py, decode.py, sampling.py) and what builds on it."""
