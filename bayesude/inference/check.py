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
from numpyro.infer.util import constrain_fn, log_density, unconstrain_fn

from bayesude.core.solve import FAILURE_REASONS, SolverSettings, stiffness_advice
from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import (
    SOLVER_FAILURE_CODE_SITE,
    SOLVER_SUCCESS_SITE,
    build_model,
)
from bayesude.inference.preflight import (
    offending_sites,
    prior_draws,
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
    latent = prior_draws(spec, prepared, num_draws, seed)
    num_parameters = sum(build_model(spec, prepared).latent_sizes.values())
    spec = dataclasses.replace(spec, solver=spec.solver.resolved(num_parameters, True))
    built = build_model(spec, prepared)
    evaluate = jax.jit(jax.vmap(_evaluation(built.model, spec.solver.adjoint)))
    log_densities, gradients_finite, solved, codes = (
        np.asarray(value) for value in evaluate(latent)
    )

    table = pd.DataFrame(
        {name: np.asarray(value) for name, value in latent.items() if value.ndim == 1}
    )
    table["solved"] = solved.astype(bool)
    table["finite_log_density"] = np.isfinite(log_densities)
    table["finite_gradient"] = gradients_finite.astype(bool)
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


def _evaluation(model, adjoint: str):
    """``values -> (log density, finite gradient, solved, failure code)`` of one draw.

    One solve gives all four: the gradient of the potential (unconstrained
    space, as NUTS sees it) carries the log density and the solve's flags as
    auxiliary outputs, in the differentiation mode the sampler will use.
    """
    differentiate = jax.jacfwd if adjoint == "forward" else jax.grad

    def potential(z):
        values = constrain_fn(model, (), {}, z)
        density, trace = log_density(model, (), {"record_trajectories": True}, values)
        flags = (
            trace[SOLVER_SUCCESS_SITE]["value"],
            trace[SOLVER_FAILURE_CODE_SITE]["value"],
        )
        return -density, (density, flags)

    def one(values):
        z = unconstrain_fn(model, (), {}, values)
        gradient, (density, (solved, code)) = differentiate(potential, has_aux=True)(z)
        finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(gradient)])
        )
        return density, finite, solved, code

    return one


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
