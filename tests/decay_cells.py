"""Synthetic cells relaxing exponentially to zero, for batch and hierarchical tests.

Each cell is observed as ``V(t) = exp(-t / tau)`` plus Gaussian noise, with no
injected current; the passive membrane with ``E_L = 0`` and ``V(0) = 1`` fixed is
exactly this model, with ``tau_m`` the cell's time constant in ms.
"""

import numpy as np
import xarray as xr

import bayesude


def decay_cell(tau_ms, times_ms, noise, seed) -> xr.Dataset:
    """One cell, dims ``(sweep, time)`` with a single sweep."""
    times_ms = np.asarray(times_ms, dtype=float)
    rng = np.random.default_rng(seed)
    voltage = np.exp(-times_ms / tau_ms) + noise * rng.standard_normal(times_ms.size)
    return xr.Dataset(
        {
            "voltage": (
                ("sweep", "time"),
                voltage[None],
                {"units": "mV", "role": "observed"},
            ),
            "current": (
                ("sweep", "time"),
                np.zeros((1, times_ms.size)),
                {"units": "pA", "role": "input"},
            ),
        },
        coords={"sweep": [0], "time": ("time", times_ms, {"units": "ms"})},
    )


def decay_cells(taus_ms, times_ms, noise, seed=0) -> xr.Dataset:
    """Several cells, dims ``(subject, sweep, time)``, ``times_ms`` per cell.

    ``times_ms`` is one array for all cells or one per cell (ragged cells: the
    time coordinate is the union, NaN where a cell has no sample).
    """
    if np.ndim(times_ms[0]) == 0:
        times_ms = [times_ms] * len(taus_ms)
    cells = [
        decay_cell(tau, times, noise, seed + index)
        for index, (tau, times) in enumerate(zip(taus_ms, times_ms, strict=True))
    ]
    subjects = [f"cell_{index:02d}" for index in range(len(cells))]
    combined = xr.concat(cells, dim="subject", join="outer")
    combined["current"] = combined["current"].fillna(0.0)
    return combined.assign_coords(subject=subjects)


def decay_specification(**priors) -> bayesude.ModelSpecification:
    """Passive membrane reduced to ``dV/dt = -V / tau_m`` from ``V(0) = 1``."""
    return bayesude.ModelSpecification(
        mechanistic="passive_membrane",
        observed={"voltage": "V"},
        fixed={"E_L": 0.0, "R_in": 100.0},
        initial_state={"V": 1.0},
        noise_prior_scale=0.1,
        priors=priors,
    )
