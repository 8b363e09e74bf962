"""Pre-flight check of a model on its data: which prior draws can be used.

Before a long NUTS run it pays to know whether the priors reach regions where
the ODE cannot be solved with the chosen settings (an exhausted step budget,
usually a sign of stiffness), where the log density is not finite, or where
its gradient is not (a removable singularity evaluated naively, a square root
of a state at zero). Such draws are rejected or derail step-size adaptation
during sampling; if they are common, the priors or solver settings deserve a
second look.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.infer import Predictive
from numpyro.infer.util import log_density, potential_energy, unconstrain_fn

from bayesude.core.solve import FAILURE_REASONS, SolverSettings, stiffness_advice
from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import (
    SOLVER_FAILURE_CODE_SITE,
    SOLVER_SUCCESS_SITE,
    build_model,
)
from bayesude.inference.preflight import (
    offending_sites,
    resolve_solver,
    warn_gradient_accuracy,
)
from bayesude.inference.prepared_data import prepare_data


def check_model(
    spec: ModelSpecification,
    data: xr.Dataset,
    *,
    num_draws: int = 100,
    seed: int = 0,
    subject: str = "subject",
) -> pd.DataFrame:
    """Solve the model at prior draws and report which fail, and why.

    Warns (:class:`~bayesude.core.numerical_warnings.StiffnessWarning`,
    :class:`~bayesude.core.numerical_warnings.GradientAccuracyWarning`) when
    the solver settings look unsuited, as :func:`~bayesude.fit` does.

    Parameters
    ----------
    spec
        The model specification.
    data
        One subject's data, dimensions ``(sweep, time)``.
    num_draws
        Number of prior draws.
    seed
        Seed of the prior draws.
    subject
        The subject's name, for error messages.

    Returns
    -------
    pandas.DataFrame
        One row per draw: the value of every scalar parameter, ``solved``,
        ``finite_log_density``, ``finite_gradient`` and ``problem`` (empty
        when the draw is fine, else what went wrong and what to change).
    """
    prepared = prepare_data(spec, data, subject)
    spec = resolve_solver(spec, prepared, seed)
    warn_gradient_accuracy(spec)
    spec = dataclasses.replace(
        spec, solver=dataclasses.replace(spec.solver, adjoint="recursive_checkpoint")
    )
    built = build_model(spec, prepared)
    draws = Predictive(built.model, num_samples=num_draws)(
        jax.random.key(seed), observe=False, record_trajectories=True
    )
    latent = {name: draws[name] for name in built.latent_sizes}
    solved = np.asarray(draws[SOLVER_SUCCESS_SITE], dtype=bool)
    codes = np.asarray(draws[SOLVER_FAILURE_CODE_SITE], dtype=int)
    log_densities = np.asarray(
        jax.vmap(lambda values: log_density(built.model, (), {}, values)[0])(latent)
    )
    gradients_finite = _finite_gradients(built.model, latent)

    table = pd.DataFrame(
        {name: np.asarray(value) for name, value in latent.items() if value.ndim == 1}
    )
    table["solved"] = solved
    table["finite_log_density"] = np.isfinite(log_densities)
    table["finite_gradient"] = gradients_finite
    table["problem"] = [
        _problem(
            spec.solver,
            int(codes[i]),
            bool(np.isfinite(log_densities[i])),
            bool(gradients_finite[i]),
            lambda i=i: offending_sites(
                built.model, {k: v[i] for k, v in latent.items()}
            ),
        )
        for i in range(num_draws)
    ]
    return table


def _finite_gradients(model, latent: dict) -> np.ndarray:
    """Whether the gradient of the potential (unconstrained space) is finite."""

    def one(values):
        unconstrained = unconstrain_fn(model, (), {}, values)
        gradient = jax.grad(lambda z: potential_energy(model, (), {}, z))(unconstrained)
        return jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(gradient)])
        )

    return np.asarray(jax.vmap(one)(latent), dtype=bool)


def _problem(
    settings: SolverSettings,
    code: int,
    finite_log_density: bool,
    finite_gradient: bool,
    sites,
) -> str:
    if code == 1:
        message = (
            f"ODE solve failed: it needed more than max_steps={settings.max_steps} "
            f"steps"
        )
        if settings.is_explicit:
            message += f"; {stiffness_advice(settings)}"
        return message
    if code:
        return (
            f"ODE solve failed: {FAILURE_REASONS[code]} (stiff or exploding "
            f"dynamics at these values; try an implicit solver or tighter priors)"
        )
    if not finite_log_density:
        return (
            "non-finite log density with a successful solve at "
            f"{', '.join(sites()) or 'no single site'} (check priors and data)"
        )
    if not finite_gradient:
        return (
            "non-finite gradient of the log density with a finite value (a rate "
            "function evaluated at a removable singularity, or a square root or "
            "logarithm of a state at zero)"
        )
    return ""
