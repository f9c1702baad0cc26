"""Evaluation: benchmarks scored on the engine's outputs. `sandbox` runs generated code isolated; `codex` scores
HumanEval samples with it; `python -m camel_jax.evaluate <benchmark>` is the command line."""
