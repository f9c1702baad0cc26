"""Training: loss, optimizer, train state, the jitted train step and Orbax checkpoints (issue 4).

Kept free of heavy imports so `import camel_jax.train` is fast; import the submodules you need.
"""
