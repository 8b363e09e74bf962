"""Simulating a library model with given parameters, outside any inference.

Used to make synthetic data, to check a model against reference solutions, and
to draw posterior predictive trajectories of new inputs (decoding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from jax import Array

from bayesude.core.inputs import evaluate_input
from bayesude.core.mechanistic import MechanisticModel
from bayesude.core.solve import SolverSettings, solve_at_times


def simulate(
    model: MechanisticModel,
    params: Mapping[str, float | Array],
    y0: Mapping[str, float | Array],
    times: np.ndarray | Array,
    inputs: Mapping[str, np.ndarray | Array] | None = None,
    settings: SolverSettings | None = None,
    input_interpolation: str = "linear",
) -> tuple[dict[str, Array], Array]:
    """Solve ``model`` from ``y0`` and return every state at ``times``.

    Parameters
    ----------
    model
        A library model, e.g. ``mechanistic_model("jansen_rit")``.
    params
        Value of every parameter, in the model's units.
    y0
        Initial value of every state at ``times[0]``.
    times
        Increasing save times, shape ``(num_times,)``, in the model's time units.
    inputs
        Each model input sampled at ``times``, shape ``(num_times,)``.
    settings
        Solver settings; None uses tight tolerances (rtol 1e-10, atol 1e-12)
        and a budget of 100,000 steps, for reference comparisons.
    input_interpolation
        ``"linear"`` or ``"previous"`` (held steps between samples).

    Returns
    -------
    states
        ``{state: (num_times,)}``.
    success
        Whether the solve succeeded (a failed one returns zeros).
    """
    missing = [name for name in model.states if name not in y0]
    if missing:
        raise ValueError(
            f"simulate: y0 lacks state(s) {missing} of {model.name}; give every "
            f"state of {list(model.states)}."
        )
    times = jnp.asarray(times, dtype=float)
    inputs = {name: jnp.asarray(v, dtype=float) for name, v in (inputs or {}).items()}
    terms = model.default_terms(params)

    def vector_field(t, y, args):
        state = dict(zip(model.states, y, strict=True))
        values = {
            name: evaluate_input(times, sampled, t, input_interpolation)
            for name, sampled in inputs.items()
        }
        derivatives = model.vector_field(t, state, params, values, terms)
        return jnp.stack([derivatives[name] for name in model.states])

    if settings is None:
        settings = SolverSettings(rtol=1e-10, atol=1e-12, max_steps=100_000)
    if settings.adjoint == "automatic":
        settings = dataclasses.replace(settings, adjoint="recursive_checkpoint")
    start = jnp.stack([jnp.asarray(y0[name], dtype=float) for name in model.states])
    states, success, _failure = solve_at_times(
        vector_field, start, times, None, settings, np.zeros(0)
    )
    return {name: states[:, i] for i, name in enumerate(model.states)}, success
