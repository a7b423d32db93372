"""Everything that trains (JAX/Flax/Optax): genome → loss, the training loop, models, data."""
