"""Checkpoint conversion into and out of camel_jax (see `python -m camel_jax.convert --help`)."""
