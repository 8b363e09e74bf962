"""Posterior draws of what a fit predicts: network outputs and trajectories.

A neural term's weights are not identifiable: permuting its hidden units, or
flipping the signs of a tanh unit's input and output weights, gives the same
network. Chains of a well-mixed UDE posterior can therefore disagree on the
weights and agree on everything the weights do. Convergence of a UDE is judged
on these functions instead:

* the output of every network over the range of inputs it was fitted on, for
  every posterior draw (:func:`network_output_draws`);
* the predicted noise-free trajectories stored in the ``predictions`` group
  (:func:`trajectory_draws`).
"""

from __future__ import annotations

import itertools
import json

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesude.core.neural import build_network
from bayesude.results import specification_of

__all__ = ["network_output_draws", "trajectory_draws"]

#: Points per input of the grid a network is evaluated on (product grid).
NUM_GRID_POINTS = 25
#: Largest product grid, so networks with many inputs stay cheap to evaluate.
MAX_GRID_POINTS = 400


def network_output_draws(
    idata: az.InferenceData, num_points: int = NUM_GRID_POINTS
) -> dict[str, xr.DataArray]:
    """Every network's output over its fitted input range, for every draw.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit made by :func:`bayesude.fit` (the specification and the networks'
        input ranges are read from the posterior's attributes).
    num_points : int
        Grid points per input; a network with ``d`` inputs is evaluated on a
        product grid of at most ``MAX_GRID_POINTS`` points.

    Returns
    -------
    dict of str to xarray.DataArray
        By term name, ``(chain, draw, <term>_point, <term>_output)``: the
        network's output (in the units of what it replaces or adds to, i.e.
        ``output_scale`` applied), with one coordinate per input on the
        ``<term>_point`` dimension giving the input values. Empty for a model
        without neural terms.

    Raises
    ------
    ValueError
        If a network's input range is neither stored with the fit nor readable
        from its observed data.
    """
    spec = specification_of(idata)
    stored = json.loads(idata.posterior.attrs.get("network_input_ranges", "{}"))
    outputs = {}
    for term in spec.neural_terms:
        inputs = spec.network_inputs(term)
        ranges = _input_ranges(idata, spec, term, inputs, stored.get(term.name, {}))
        network = build_network(term, inputs, ranges)
        grid = _grid(inputs, ranges, num_points)
        weights = idata.posterior[f"{term.name}_weights"].values
        values = _evaluate(network, weights, grid)
        outputs[term.name] = _labelled(term.name, inputs, grid, values)
    return outputs


def trajectory_draws(idata: az.InferenceData) -> dict[str, xr.DataArray]:
    """The stored noise-free trajectories, ``(chain, draw, sweep, time)``, by variable.

    Empty when the fit has no ``predictions`` group, or when it stores the
    trajectories of one chain only (fits written before chains were kept
    apart), since R-hat needs chains.
    """
    if "predictions" not in idata.groups():
        return {}
    predictions = idata.predictions
    if predictions.sizes.get("chain", 0) < 2:
        return {}
    return {str(name): values for name, values in predictions.data_vars.items()}


def _input_ranges(idata, spec, term, inputs, stored) -> dict[str, tuple[float, float]]:
    ranges = {name: tuple(bounds) for name, bounds in stored.items()}
    ranges.update({name: tuple(bounds) for name, bounds in term.input_ranges})
    observed_state = {state: name for name, state in spec.observed.items()}
    for name in inputs:
        if name in ranges:
            continue
        variable = observed_state.get(name)
        if variable is None or "observed_data" not in idata.groups():
            raise ValueError(
                f"The range of input {name!r} of network {term.name!r} is not stored "
                "with this fit and cannot be read from its observed data; refit "
                "with this version of bayesude, or give the term input_ranges."
            )
        values = idata.observed_data[variable].values
        ranges[name] = (float(np.nanmin(values)), float(np.nanmax(values)))
    return ranges


def _grid(inputs, ranges, num_points: int) -> np.ndarray:
    """Product grid over the inputs' ranges, ``(num_points_total, num_inputs)``."""
    per_input = max(2, min(num_points, int(MAX_GRID_POINTS ** (1 / len(inputs)))))
    axes = [np.linspace(*ranges[name], per_input) for name in inputs]
    return np.array(list(itertools.product(*axes)), dtype=float)


def _evaluate(network, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Network outputs, ``(chain, draw, point, output)``."""
    num_chains, num_draws, num_weights = weights.shape

    def at_point(flat_weights, point):
        return network(flat_weights, *point)

    over_points = jax.vmap(at_point, in_axes=(None, 0))
    over_draws = jax.jit(jax.vmap(over_points, in_axes=(0, None)))
    flat = weights.reshape(num_chains * num_draws, num_weights)
    values = np.asarray(over_draws(jnp.asarray(flat), jnp.asarray(grid)))
    return values.reshape(num_chains, num_draws, *values.shape[1:])


def _labelled(name, inputs, grid, values) -> xr.DataArray:
    point = f"{name}_point"
    return xr.DataArray(
        values,
        dims=("chain", "draw", point, f"{name}_output"),
        coords={
            **{inp: (point, grid[:, i]) for i, inp in enumerate(inputs)},
        },
        name=f"{name}_output",
    )
