"""Noise-free predictions at each observation of a fit, in the user's row order."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from bayesude.predictive_checks import observed_variable


def observation_predictions(idata: az.InferenceData, variable: str) -> xr.DataArray:
    """The noise-free model prediction at every observation of `variable`.

    Parameters
    ----------
    idata
        A fit from :func:`bayesude.fit`.
    variable
        An observed data variable, e.g. ``"voltage"``.

    Returns
    -------
    xarray.DataArray
        ``(chain, draw, <variable>_observation)`` over the draws kept in the
        ``predictions`` group, with the observations in the order of
        ``observed_data`` (the user's row order) and its ``sweep``, ``time``
        and ``row`` coordinates. Observations at the same sweep and time get
        the same prediction.
    """
    observed = observed_variable(idata, variable)
    trajectory = idata.predictions[variable]
    dimension = f"{variable}_observation"
    sweep = xr.DataArray(observed["sweep"].values, dims=dimension)
    time = xr.DataArray(observed["time"].values, dims=dimension)
    # Times come from the same float64 array as the trajectory's, so exact
    # positions can be looked up without tolerance.
    position = xr.DataArray(
        np.searchsorted(trajectory["time"].values, time.values), dims=dimension
    )
    values = trajectory.sel(sweep=sweep).isel(time=position)
    return values.drop_vars(["sweep", "time"], errors="ignore").assign_coords(
        {name: (dimension, observed[name].values) for name in observed.coords}
    )
