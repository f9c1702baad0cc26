"""Compile-only planning of training runs for TPU slices (`python -m camel_jax.plan`)."""
