"""Checks run before sampling: solver choice, gradient accuracy, chains, memory.

Each check either resolves an automatic setting or warns (with a
:class:`~bayesude.core.numerical_warnings.BayesudeWarning`) naming the setting
to change, before any long computation starts.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive

from bayesude.core.numerical_warnings import (
    ChainMethodWarning,
    GradientAccuracyWarning,
    StiffnessWarning,
    TrajectorySizeWarning,
)
from bayesude.core.solve import (
    StiffnessEstimate,
    choose_solver,
    estimate_stiffness,
    stiffness_advice,
)
from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import SOLVER_FAILURE_SITE, build_model
from bayesude.inference.prepared_data import PreparedData

logger = logging.getLogger(__name__)

#: Prior draws whose per-site median is the point of the stiffness estimate.
_MEDIAN_DRAWS = 15


def resolve_solver(
    spec: ModelSpecification, data: PreparedData, seed: int = 0
) -> ModelSpecification:
    """``spec`` with ``solver="automatic"`` resolved, warning if it looks stiff.

    Stiffness is estimated from the Jacobian of the vector field at the
    initial state and the prior median of the parameters. An explicit solver
    named by the user is kept, with a :class:`StiffnessWarning` if stability
    alone would use more than half its step budget.
    """
    estimate = stiffness_at_prior_median(spec, data, seed)
    settings = choose_solver(spec.solver, estimate)
    if spec.solver.solver == "automatic":
        logger.info(
            "Solver %s chosen automatically (fastest rate %.3g per time unit, about "
            "%.0f explicit steps needed for stability alone).",
            settings.solver,
            estimate.spectral_radius,
            estimate.explicit_steps,
        )
    elif settings.is_explicit and estimate.looks_stiff(settings.max_steps):
        warnings.warn(
            f"At the prior median, stability alone needs about "
            f"{estimate.explicit_steps:.3g} steps of {settings.solver} over the "
            f"solve (fastest rate {estimate.spectral_radius:.3g} per time unit), "
            f"against max_steps={settings.max_steps}: "
            f"{stiffness_advice(settings)}.",
            StiffnessWarning,
            stacklevel=3,
        )
    return dataclasses.replace(spec, solver=settings)


def stiffness_at_prior_median(
    spec: ModelSpecification, data: PreparedData, seed: int = 0
) -> StiffnessEstimate:
    """Stiffness estimate at the initial state and the prior median."""
    built = _without_solve(spec, data)
    draws = prior_draws(spec, data, _MEDIAN_DRAWS, seed)
    median = {name: np.median(v, axis=0) for name, v in draws.items()}
    capture: dict = {}
    handlers.seed(handlers.substitute(built.model, data=median), 0)(capture=capture)
    return estimate_stiffness(
        capture["vector_field"],
        capture["y0"],
        capture["args"],
        capture["t0"],
        capture["t1"],
    )


def prior_draws(
    spec: ModelSpecification, data: PreparedData, num_draws: int, seed: int
) -> dict[str, np.ndarray]:
    """Prior draws of every latent site, ``{site: (num_draws, ...)}``."""
    built = _without_solve(spec, data)
    draws = Predictive(
        built.model, num_samples=num_draws, return_sites=list(built.latent_sizes)
    )(jax.random.key(seed))
    return {name: np.asarray(value) for name, value in draws.items()}


def _without_solve(spec: ModelSpecification, data: PreparedData):
    # The solve plays no part in prior draws; a two-step explicit one keeps
    # them cheap whatever the solver setting.
    cheap = dataclasses.replace(
        spec,
        solver=dataclasses.replace(
            spec.solver, solver="Tsit5", max_steps=2, adjoint="recursive_checkpoint"
        ),
    )
    return build_model(cheap, data)


def warn_gradient_accuracy(spec: ModelSpecification) -> list[str]:
    """Warn, once per problem, when the solver settings make gradients unreliable.

    Returns the problems found (empty when the settings are fine).
    """
    problems = spec.solver.gradient_accuracy_problems()
    for problem in problems:
        warnings.warn(
            f"Gradients may be inaccurate: {problem}",
            GradientAccuracyWarning,
            stacklevel=3,
        )
    return problems


def resolve_chain_method(chain_method: str, num_chains: int) -> str:
    """The chain method to use: ``"parallel"`` becomes ``"vectorized"``.

    ``"parallel"`` needs one JAX device per chain. With fewer devices, one
    :class:`ChainMethodWarning` says how to get more. With enough, it says
    that parallel chains are not supported yet: failed solves are counted per
    chain through ordered host callbacks, which NumPyro's parallel chains do
    not deliver in a known order. Either way the chains run vectorized (one
    compiled program for all chains, the fastest method on one device), and
    the method used is recorded with the fit.
    """
    if chain_method != "parallel" or num_chains <= 1:
        return chain_method
    devices = jax.local_device_count()
    if devices < num_chains:
        message = (
            f"chain_method='parallel' needs one JAX device per chain, but JAX has "
            f"{devices} device(s) for {num_chains} chains; running the chains "
            f"'vectorized' instead. More CPU devices come from setting "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_chains} in the "
            f"environment (or calling numpyro.set_host_device_count({num_chains})) "
            f"before JAX is first imported, i.e. before importing bayesude."
        )
    else:
        message = (
            f"chain_method='parallel' is not supported yet, because failed solves "
            f"could not be counted per chain; running the {num_chains} chains "
            f"'vectorized' on one of the {devices} devices instead."
        )
    warnings.warn(message, ChainMethodWarning, stacklevel=3)
    return "vectorized"


def trajectory_size_bytes(
    num_chains: int, num_draws: int, num_sweeps: int, num_times: int, num_states: int
) -> int:
    """Bytes of float64 trajectories of every state for every draw."""
    return num_chains * num_draws * num_sweeps * num_times * num_states * 8


def warn_trajectory_size(size_bytes: int, description: str) -> None:
    """Warn before sampling how much keeping every trajectory will take."""
    warnings.warn(
        f"save_trajectories=True keeps every draw's trajectories: about "
        f"{format_bytes(size_bytes)} ({description} × 8 bytes) in memory and in "
        f"the fit file. Leave it False to keep only a thinned set for plots "
        f"(num_trajectory_draws).",
        TrajectorySizeWarning,
        stacklevel=3,
    )


def format_bytes(size: float) -> str:
    """``51.2 MB``-style size (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.3g} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    raise AssertionError("unreachable")


def offending_sites(model, values: dict) -> list[str]:
    """Sites whose log density is not finite at ``values`` (constrained space).

    Each entry names the site and says what is wrong, for error messages.
    """
    trace = handlers.trace(
        handlers.seed(handlers.substitute(model, data=values), 0)
    ).get_trace()
    problems = []
    for name, site in trace.items():
        if site["type"] != "sample":
            continue
        value = site["value"]
        support = site["fn"].support
        inside = bool(np.all(np.asarray(support(value))))
        log_density = np.asarray(site["fn"].log_prob(value))
        if name == SOLVER_FAILURE_SITE and not np.all(np.isfinite(log_density)):
            problems.append(f"{name} (the ODE solve failed at these values)")
        elif not inside:
            problems.append(f"{name} (value {np.asarray(value)} outside its support)")
        elif not np.all(np.isfinite(log_density)):
            problems.append(f"{name} (non-finite log density)")
    return problems


__all__ = [
    "format_bytes",
    "offending_sites",
    "prior_draws",
    "resolve_chain_method",
    "resolve_solver",
    "stiffness_at_prior_median",
    "trajectory_size_bytes",
    "warn_gradient_accuracy",
    "warn_trajectory_size",
]
