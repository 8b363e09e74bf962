"""Pre-flight check of a model on its data: which prior draws can be solved.

Before a long NUTS run it pays to know whether the priors reach regions where
the ODE cannot be solved with the chosen settings (an exhausted step budget,
usually a sign of stiffness) or where the log density is not finite. Such
draws are rejected during sampling, but if they are common, warm-up will be
slow and the priors or solver settings deserve a second look.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import SOLVER_SUCCESS_SITE, build_model
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
        ``finite_log_density`` and ``problem`` (empty when the draw is fine).
    """
    prepared = prepare_data(spec, data, subject)
    spec = dataclasses.replace(
        spec, solver=dataclasses.replace(spec.solver, adjoint="recursive_checkpoint")
    )
    built = build_model(spec, prepared)
    draws = Predictive(built.model, num_samples=num_draws)(
        jax.random.key(seed), observe=False, record_trajectories=True
    )
    latent = {name: draws[name] for name in built.latent_sizes}
    solved = np.asarray(draws[SOLVER_SUCCESS_SITE], dtype=bool)
    log_densities = np.asarray(
        jax.vmap(lambda values: log_density(built.model, (), {}, values)[0])(latent)
    )

    table = pd.DataFrame(
        {name: np.asarray(value) for name, value in latent.items() if value.ndim == 1}
    )
    table["solved"] = solved
    table["finite_log_density"] = np.isfinite(log_densities)
    table["problem"] = [
        _problem(ok, finite, spec.solver.max_steps)
        for ok, finite in zip(solved, np.isfinite(log_densities), strict=True)
    ]
    return table


def _problem(solved: bool, finite: bool, max_steps: int) -> str:
    if not solved:
        return (
            f"ODE solve failed: it needed more than max_steps={max_steps} steps or its "
            f"state became non-finite (stiff or exploding dynamics at these values)"
        )
    if not finite:
        return "non-finite log density with a successful solve (check priors and data)"
    return ""
