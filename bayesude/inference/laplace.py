"""Starting NUTS at the best of several posterior modes with a Laplace mass matrix.

For a UDE, the posterior of the network weights is narrow along the few
directions the data constrain and as wide as the prior along the many they do
not, and these directions are rotated against the weight axes. A diagonal mass
matrix cannot undo that rotation, so NUTS needs long trajectories (it hits its
maximum tree depth) and warm-up adapts too slowly to recover. The negative
Hessian of the log density at a mode describes this local shape, so its
inverse, used as NUTS's dense inverse mass matrix, undoes the rotation and the
scales near the mode, as far as the posterior is Gaussian there (for an
oscillator fitted over several cycles it is not far from the mode; see
``docs/ude_convergence.md``).

Several optimisations from distinct prior draws find distinct modes; the best
one (highest log density) is used. Modes of a network that only permute or
flip hidden units are equivalent, and chains are judged on the network's output
rather than its weights (:mod:`bayesude.learned_terms`).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_sample
from numpyro.infer.util import initialize_model, potential_energy

logger = logging.getLogger(__name__)

#: Smallest eigenvalue kept in the Hessian, as a fraction of the largest one,
#: so a direction the optimiser left slightly uphill still gets a finite scale.
_RELATIVE_EIGENVALUE_FLOOR = 1e-8

#: Newton steps taken from the best Adam optimum towards the mode.
_NEWTON_STEPS = 5


@dataclasses.dataclass(frozen=True)
class LaplaceStart:
    """The best mode found and the Gaussian approximation around it.

    Attributes
    ----------
    mode
        Unconstrained values at the mode, by site name.
    covariance
        Inverse of the Hessian of the potential at the mode, shape
        ``(num_dims, num_dims)``, in the order of ``ravel_pytree(mode)``.
    site_names
        Sites in that order (sorted names, as NumPyro flattens them).
    potentials
        Potential energy (negative log density) reached by every start,
        shape ``(num_starts,)``; ``inf`` where the optimisation failed.
    """

    mode: dict[str, jax.Array]
    covariance: np.ndarray
    site_names: tuple[str, ...]
    potentials: np.ndarray

    def draws(self, key: jax.Array, num_draws: int, scale: float) -> dict:
        """Draws from the Gaussian at the mode, covariance ``scale**2 * covariance``."""
        flat, unravel = ravel_pytree(self.mode)
        factor = np.linalg.cholesky(self.covariance)
        noise = jax.random.normal(key, (num_draws, flat.size))
        points = flat + scale * noise @ jnp.asarray(factor).T
        return jax.vmap(unravel)(points)


def find_laplace_start(
    model,
    key: jax.Array,
    num_starts: int,
    num_steps: int,
    learning_rate: float,
    hessian_model=None,
) -> LaplaceStart:
    """Optimise from ``num_starts`` prior draws and return the best mode's Laplace fit.

    Parameters
    ----------
    model
        NumPyro model whose solve supports reverse-mode gradients.
    key
        Random key of the starting draws.
    num_starts
        Optimisations run side by side (vectorised) from distinct prior draws.
    num_steps, learning_rate
        Adam steps and learning rate of each optimisation, in unconstrained
        space.
    hessian_model
        The same model with a solve that supports forward-over-reverse
        differentiation (for the Hessian); ``model`` when None.
    """
    started = time.perf_counter()
    keys = jax.random.split(key, num_starts)
    starts = [
        initialize_model(k, model, init_strategy=init_to_sample).param_info.z
        for k in keys
    ]
    flat_starts = jnp.stack([ravel_pytree(z)[0] for z in starts])
    _, unravel = ravel_pytree(starts[0])

    def potential(x):
        return potential_energy(model, (), {}, unravel(x))

    modes, potentials = _optimise(potential, flat_starts, num_steps, learning_rate)
    best = int(np.nanargmin(potentials))
    logger.info(
        "%d MAP optimisations in %.1f s; potentials at the modes: %s.",
        num_starts,
        time.perf_counter() - started,
        np.round(np.sort(potentials), 1).tolist(),
    )

    hessian_target = model if hessian_model is None else hessian_model

    def hessian_potential(x):
        return potential_energy(hessian_target, (), {}, unravel(x))

    mode, covariance = _newton_polish(
        jax.jit(potential),
        jax.jit(jax.grad(potential)),
        jax.jit(jax.hessian(hessian_potential)),
        modes[best],
    )
    return LaplaceStart(
        mode=unravel(mode),
        covariance=covariance,
        site_names=tuple(sorted(starts[0])),
        potentials=potentials,
    )


def _newton_polish(potential, gradient, hessian, x, num_steps=_NEWTON_STEPS):
    """A few damped Newton steps from ``x``; returns the point and its covariance.

    Adam leaves the weights short of the mode along the directions the data
    constrain most, where the Hessian is largest; a Newton step reaches it, so
    that the Gaussian around the mode describes the posterior rather than a
    slope.
    """
    covariance = _positive_inverse(np.asarray(hessian(x)))
    value = start_value = float(potential(x))
    for _ in range(num_steps):
        step = -covariance @ np.asarray(gradient(x))
        for fraction in (1.0, 0.5, 0.25, 0.125):
            candidate = x + fraction * step
            candidate_value = float(potential(candidate))
            if candidate_value < value:
                break
        else:
            break
        x, value = candidate, candidate_value
        covariance = _positive_inverse(np.asarray(hessian(x)))
    logger.info(
        "Newton steps took the potential from %.2f to %.2f.", start_value, value
    )
    return x, covariance


def _optimise(potential, starts, num_steps, learning_rate):
    """Adam on ``potential`` from each row of ``starts``, vectorised over starts."""
    optimiser = optax.adam(learning_rate)
    value_and_grad = jax.value_and_grad(potential)

    def run(x):
        def step(carry, _):
            x, state = carry
            value, gradient = value_and_grad(x)
            # A failed solve gives an infinite potential and a zero gradient;
            # the step is skipped so one bad proposal cannot end the run.
            gradient = jnp.where(jnp.isfinite(value), gradient, 0.0)
            updates, state = optimiser.update(gradient, state, x)
            return (optax.apply_updates(x, updates), state), value

        (x, _), _ = jax.lax.scan(step, (x, optimiser.init(x)), None, length=num_steps)
        return x, potential(x)

    modes, potentials = jax.jit(jax.vmap(run))(starts)
    potentials = np.where(np.isfinite(potentials), np.asarray(potentials), np.inf)
    return modes, potentials


def _positive_inverse(hessian: np.ndarray) -> np.ndarray:
    """Inverse of a symmetrised Hessian with its eigenvalues floored (positive)."""
    symmetric = (hessian + hessian.T) / 2.0
    values, vectors = np.linalg.eigh(symmetric)
    floor = _RELATIVE_EIGENVALUE_FLOOR * max(float(np.abs(values).max()), 1.0)
    values = np.maximum(np.abs(values), floor)
    return (vectors / values) @ vectors.T
