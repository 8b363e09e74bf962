"""A fitted neural term as a function: its output per posterior draw on a grid.

Network weights are not identifiable (permuting hidden units, or flipping the
signs of a tanh unit's input and output weights, leaves the network unchanged),
so a UDE's convergence and its learned term are judged on the network's output
at chosen input values, never on the weights.
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data
from bayesude.results import specification_of

__all__ = ["learned_term_draws"]


def learned_term_draws(
    idata: az.InferenceData,
    data: xr.Dataset,
    term: str,
    points: dict[str, np.ndarray],
) -> xr.DataArray:
    """The output of neural term ``term`` for every posterior draw at ``points``.

    Parameters
    ----------
    idata
        A fit made by :func:`bayesude.fit`.
    data
        The subject's data the fit was made on (the network's input scaling is
        read from its ranges, as during the fit).
    term
        Name of the neural term.
    points
        ``{input name: values}``, one array of shape ``(num_points,)`` for each
        of the network's inputs, in the inputs' units.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, point[, output])``: ``output`` only for a term with
        several outputs. Units are those of what the term replaces or adds to.

    Raises
    ------
    ValueError
        If the fit has no neural term ``term``, or ``points`` misses one of its
        inputs or gives arrays of different lengths.
    """
    spec = specification_of(idata)
    if "subject" in data.dims:
        data = data.isel(subject=0, drop=True)
    networks = build_model(spec, prepare_data(spec, data, "subject")).networks
    if term not in networks:
        raise ValueError(
            f"The fit has no neural term {term!r}; its neural terms are "
            f"{sorted(networks)}."
        )
    network = networks[term]
    missing = [name for name in network.inputs if name not in points]
    if missing:
        raise ValueError(
            f"points must give values for every input of {term!r} "
            f"{list(network.inputs)}; missing {missing}."
        )
    columns = [np.asarray(points[name], dtype=float) for name in network.inputs]
    if len({column.shape for column in columns}) != 1 or columns[0].ndim != 1:
        raise ValueError(
            f"points must give one 1-d array of the same length per input; got "
            f"shapes {[column.shape for column in columns]}."
        )

    weights = jnp.asarray(idata.posterior[f"{term}_weights"].values)
    inputs = jnp.stack([jnp.asarray(column) for column in columns], axis=-1)
    evaluate = jax.jit(
        jax.vmap(jax.vmap(lambda w: jax.vmap(lambda x: network(w, *x))(inputs)))
    )
    outputs = np.asarray(evaluate(weights))
    dims = ["chain", "draw", "point", "output"]
    if outputs.shape[-1] == 1:
        outputs, dims = outputs[..., 0], dims[:-1]
    coords = {name: ("point", column) for name, column in zip(network.inputs, columns)}
    return xr.DataArray(
        outputs,
        dims=dims,
        coords={
            "chain": idata.posterior["chain"].values,
            "draw": idata.posterior["draw"].values,
            **coords,
        },
        name=term,
    )
