"""Bayesian universal differential equations for neuroscience.

Importing bayesude switches JAX to float64: ODE solves inside NUTS need the
extra precision for reliable gradients, and every array that reaches the
solver is float64 by design.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
