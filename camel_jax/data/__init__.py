"""Instruction data: raw dataset converters to the unified messages jsonl, and their CLI.

Kept import-light on purpose (no tensorflow/seqio/tokenizer imports here): `python -m camel_jax.data` and the
training path import this package, and the heavy libraries load only inside the functions that need them.
"""
