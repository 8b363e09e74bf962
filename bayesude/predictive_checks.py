"""Posterior predictive checks on the features neuroscientists look at.

Every function takes a fit (``arviz.InferenceData`` in the layout of
``docs/conventions.md``) and the name of an observed variable, and returns
data: the observed feature next to the distribution of the same feature in the
posterior predictive draws. Rendering is left to :mod:`bayesude.report`.

Which checks apply depends on what a variable is (:func:`observation_kind`):

* a continuous trace (voltage): credible bands over time and residuals;
* spike counts in bins: total counts per sweep, the firing rate against the
  stimulus (F–I curve) and inter-spike intervals;
* a rate (population activity): credible bands and power spectra.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import scipy.signal
import xarray as xr

__all__ = [
    "firing_rate_curve",
    "observed_variable",
    "interspike_intervals",
    "observation_kind",
    "power_spectra",
    "predictive_bands",
    "residuals",
    "spike_count_check",
]

SAMPLE_DIMS = ("chain", "draw")
#: Quantiles of the predictive distribution: 90% band, 50% band and median.
BAND_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Posterior predictive draws used for features costly per draw (ISIs, spectra).
MAX_FEATURE_DRAWS = 200

_COUNT_MODELS = ("poisson", "negative_binomial")
_COUNT_UNITS = ("count", "counts", "spikes", "spike", "1")
_RATE_UNITS = ("Hz", "1/s", "spikes/s", "1/ms")


def observation_kind(idata: az.InferenceData, variable: str) -> str:
    """``"spike_count"``, ``"rate"`` or ``"continuous"``.

    Read, in this order, from the observed variable's ``observation_model``
    attribute (``poisson``/``negative_binomial`` mean counts; ``rate``), its
    ``kind`` attribute, its ``units`` (``count``/``spikes``; ``Hz``/``1/s``) and
    its name (containing ``spike`` or ``rate``).
    """
    attrs = _observed(idata, variable).attrs
    model = str(attrs.get("observation_model", attrs.get("kind", ""))).lower()
    if model in _COUNT_MODELS or model == "spike_count":
        return "spike_count"
    if model == "rate":
        return "rate"
    units = str(attrs.get("units", ""))
    if units in _COUNT_UNITS:
        return "spike_count"
    if units in _RATE_UNITS:
        return "rate"
    lowered = variable.lower()
    if "spike" in lowered:
        return "spike_count"
    if "rate" in lowered:
        return "rate"
    return "continuous"


def predictive_bands(idata: az.InferenceData, variable: str) -> dict[int, tuple]:
    """Predictive quantiles per sweep: ``{sweep: (time, quantiles (5, time))}``.

    Uses the noise-free trajectories of the ``predictions`` group when present
    (the model's credible band), else the posterior predictive draws at the
    observations (which include the observation noise).
    """
    if "predictions" in idata.groups() and variable in idata.predictions:
        trajectories = idata.predictions[variable]
        quantiles = trajectories.quantile(BAND_QUANTILES, dim=list(SAMPLE_DIMS))
        times = np.asarray(trajectories["time"].values, dtype=float)
        return {
            int(sweep): (times, quantiles.sel(sweep=sweep).values)
            for sweep in trajectories["sweep"].values
        }
    draws = _predictive_draws(idata, variable)
    quantiles = draws.quantile(BAND_QUANTILES, dim=list(SAMPLE_DIMS)).values
    observed = _observed(idata, variable)
    times = np.asarray(observed["time"].values, dtype=float)
    return {
        sweep: (times[order], quantiles[:, order])
        for sweep, order in _indices_by_sweep(observed).items()
    }


def residuals(idata: az.InferenceData, variable: str) -> pd.DataFrame:
    """Observed minus predicted at every observation, in time order per sweep.

    Returns
    -------
    pandas.DataFrame
        One row per observation: ``sweep``, ``time``, ``observed``,
        ``predicted`` (posterior predictive median), ``residual``,
        ``standardised`` (residual over the predictive standard deviation) and
        ``inside_90`` (whether the observation lies in the central 90% of its
        predictive distribution). About 90% of rows should be inside for a
        calibrated model; long runs of same-signed residuals in time show
        dynamics the model misses.
    """
    observed = _observed(idata, variable)
    draws = _predictive_draws(idata, variable)
    stacked = draws.stack(sample=SAMPLE_DIMS).transpose(..., "sample").values
    median = np.nanmedian(stacked, axis=-1)
    spread = np.nanstd(stacked, axis=-1)
    low, high = np.nanquantile(stacked, [0.05, 0.95], axis=-1)
    values = np.asarray(observed.values, dtype=float)
    table = pd.DataFrame(
        {
            "sweep": np.asarray(observed["sweep"].values),
            "time": np.asarray(observed["time"].values, dtype=float),
            "observed": values,
            "predicted": median,
            "residual": values - median,
            "standardised": (values - median) / np.where(spread > 0, spread, np.nan),
            "inside_90": (values >= low) & (values <= high),
        }
    )
    return table.sort_values(["sweep", "time"], kind="stable").reset_index(drop=True)


def spike_count_check(idata: az.InferenceData, variable: str) -> pd.DataFrame:
    """Total spike count per sweep, observed and predicted.

    Returns
    -------
    pandas.DataFrame
        One row per sweep: ``observed`` count, predictive quantiles
        ``q05``, ``q50``, ``q95`` and ``p_value`` (fraction of predictive draws
        with at least the observed count; values near 0 or 1 flag a misfit).
    """
    observed = _observed(idata, variable)
    totals = _totals_per_sweep(_predictive_draws(idata, variable), observed)
    rows = []
    for sweep, draws in totals.items():
        count = float(np.nansum(observed.values[observed["sweep"].values == sweep]))
        q05, q50, q95 = np.quantile(draws, [0.05, 0.5, 0.95])
        rows.append(
            {
                "sweep": sweep,
                "observed": count,
                "q05": q05,
                "q50": q50,
                "q95": q95,
                "p_value": float(np.mean(draws >= count)),
            }
        )
    return pd.DataFrame(rows)


def firing_rate_curve(
    idata: az.InferenceData,
    variable: str,
    stimulus_per_sweep: dict[int, float] | None = None,
) -> pd.DataFrame:
    """F–I curve: firing rate per sweep against the sweep's stimulus.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit with spike counts in bins as ``variable``.
    variable : str
        The spike-count variable.
    stimulus_per_sweep : dict of int to float, optional
        Stimulus (e.g. step current in pA) by sweep. By default read from a
        ``stimulus`` coordinate on the observation dimension.

    Returns
    -------
    pandas.DataFrame
        One row per sweep, sorted by stimulus: ``stimulus``, ``observed_rate``
        and predictive ``rate_q05``, ``rate_q50``, ``rate_q95``, in spikes per
        time unit of the fit (per ms for membrane models: multiply by 1000 for
        Hz).

    Raises
    ------
    ValueError
        If no stimulus is given or stored.
    """
    observed = _observed(idata, variable)
    stimulus = _stimulus(observed, stimulus_per_sweep, variable)
    counts = spike_count_check(idata, variable)
    durations = _durations_per_sweep(observed)
    table = pd.DataFrame(
        {
            "sweep": counts["sweep"],
            "stimulus": [stimulus[s] for s in counts["sweep"]],
            "observed_rate": counts["observed"] / counts["sweep"].map(durations),
            **{
                f"rate_{q}": counts[q] / counts["sweep"].map(durations)
                for q in ("q05", "q50", "q95")
            },
        }
    )
    return table.sort_values("stimulus").reset_index(drop=True)


def interspike_intervals(
    idata: az.InferenceData, variable: str, max_draws: int = MAX_FEATURE_DRAWS
) -> dict[str, np.ndarray]:
    """Inter-spike intervals from binned counts, observed and predicted.

    A bin with ``n`` spikes contributes ``n`` spikes at its time; intervals are
    differences of successive spike times within a sweep, so intervals shorter
    than a bin are 0.

    Returns
    -------
    dict
        ``"observed"`` (intervals of the recording) and ``"predicted"`` (pooled
        intervals of up to ``max_draws`` posterior predictive draws), in the
        fit's time units.
    """
    observed = _observed(idata, variable)
    draws = _thinned_draws(_predictive_draws(idata, variable), max_draws)
    return {
        "observed": _intervals(observed.values, observed),
        "predicted": np.concatenate(
            [_intervals(draw, observed) for draw in draws] or [np.array([])]
        ),
    }


def power_spectra(
    idata: az.InferenceData, variable: str, max_draws: int = MAX_FEATURE_DRAWS
) -> xr.Dataset:
    """Welch power spectra of the observed and predicted signal, averaged over sweeps.

    Returns
    -------
    xarray.Dataset
        Over ``frequency`` (cycles per time unit of the fit): ``observed``
        power and the predictive power's ``q05``, ``q50`` and ``q95``.

    Raises
    ------
    ValueError
        If a sweep's samples are not evenly spaced in time.
    """
    observed = _observed(idata, variable)
    draws = _thinned_draws(_predictive_draws(idata, variable), max_draws)
    frequency, observed_power = _mean_spectrum(observed.values, observed, variable)
    predicted = np.stack(
        [_mean_spectrum(draw, observed, variable)[1] for draw in draws]
    )
    q05, q50, q95 = np.quantile(predicted, [0.05, 0.5, 0.95], axis=0)
    return xr.Dataset(
        {
            "observed": ("frequency", observed_power),
            "q05": ("frequency", q05),
            "q50": ("frequency", q50),
            "q95": ("frequency", q95),
        },
        coords={"frequency": frequency},
    )


def observed_variable(idata: az.InferenceData, variable: str) -> xr.DataArray:
    """An observed variable with its ``sweep``, ``time`` and ``row`` coordinates.

    The coordinates are read from ``sweep``/``time``/``row`` on the variable's
    observation dimension or, where several observed variables need their own,
    from ``<variable>_sweep``/``<variable>_time``/``<variable>_row``.

    Raises
    ------
    ValueError
        If the fit has no such observed variable or it lacks the coordinates.
    """
    if "observed_data" not in idata.groups() or variable not in idata.observed_data:
        raise ValueError(
            f"The fit has no observed variable {variable!r}; predictive checks need "
            "the observed_data group written by bayesude.fit."
        )
    observed = idata.observed_data[variable]
    (dim,) = observed.dims
    for name in ("sweep", "time", "row"):
        if name in observed.coords and observed[name].dims == (dim,):
            continue
        own = idata.observed_data.coords.get(f"{variable}_{name}")
        if own is None and name == "row":
            continue  # fits written before rows were recorded
        if own is None or own.dims != (dim,):
            raise ValueError(
                f"The observed variable {variable!r} has no {name!r} coordinate on "
                f"{dim!r}; store one as {name!r} or {variable}_{name!r}."
            )
        observed = observed.assign_coords({name: (dim, own.values)})
    return observed


def _observed(idata: az.InferenceData, variable: str) -> xr.DataArray:
    return observed_variable(idata, variable)


def _predictive_draws(idata: az.InferenceData, variable: str) -> xr.DataArray:
    has = "posterior_predictive" in idata.groups()
    if not has or variable not in idata.posterior_predictive:
        raise ValueError(
            f"The fit has no posterior predictive draws of {variable!r}; refit with "
            "bayesude.fit, which stores them."
        )
    return idata.posterior_predictive[variable]


def _indices_by_sweep(observed: xr.DataArray) -> dict[int, np.ndarray]:
    """Observation indices of each sweep, in time order."""
    sweeps = np.asarray(observed["sweep"].values)
    times = np.asarray(observed["time"].values, dtype=float)
    indices = {}
    for sweep in np.unique(sweeps):
        selected = np.flatnonzero(sweeps == sweep)
        indices[int(sweep)] = selected[np.argsort(times[selected], kind="stable")]
    return indices


def _flat_draws(draws: xr.DataArray) -> np.ndarray:
    """``(sample, observation)``, draws of all chains together."""
    return draws.stack(sample=SAMPLE_DIMS).transpose("sample", ...).values


def _thinned_draws(draws: xr.DataArray, max_draws: int) -> np.ndarray:
    flat = _flat_draws(draws)
    chosen = np.unique(np.linspace(0, len(flat) - 1, min(max_draws, len(flat))))
    return flat[chosen.astype(int)]


def _totals_per_sweep(draws: xr.DataArray, observed) -> dict[int, np.ndarray]:
    flat = _flat_draws(draws)
    return {
        sweep: np.nansum(flat[:, order], axis=1)
        for sweep, order in _indices_by_sweep(observed).items()
    }


def _durations_per_sweep(observed) -> dict[int, float]:
    """Recorded duration of each sweep: its number of bins times the bin width."""
    times = np.asarray(observed["time"].values, dtype=float)
    durations = {}
    for sweep, order in _indices_by_sweep(observed).items():
        steps = np.diff(times[order])
        width = float(np.median(steps)) if steps.size else 1.0
        durations[sweep] = width * order.size
    return durations


def _stimulus(observed, stimulus_per_sweep, variable) -> dict[int, float]:
    if stimulus_per_sweep is not None:
        return {int(k): float(v) for k, v in stimulus_per_sweep.items()}
    if "stimulus" not in observed.coords:
        raise ValueError(
            f"An F–I curve of {variable!r} needs the stimulus of each sweep: pass "
            "stimulus_per_sweep={sweep: amplitude} or store a 'stimulus' "
            "coordinate on the observations."
        )
    sweeps = np.asarray(observed["sweep"].values)
    stimulus = np.asarray(observed["stimulus"].values, dtype=float)
    return {int(s): float(stimulus[sweeps == s][0]) for s in np.unique(sweeps)}


def _intervals(values: np.ndarray, observed) -> np.ndarray:
    times = np.asarray(observed["time"].values, dtype=float)
    values = np.nan_to_num(np.asarray(values, dtype=float)).round().astype(int)
    intervals = []
    for order in _indices_by_sweep(observed).values():
        spike_times = np.repeat(times[order], np.clip(values[order], 0, None))
        intervals.append(np.diff(spike_times))
    return np.concatenate(intervals) if intervals else np.array([])


def _mean_spectrum(values, observed, variable) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(observed["time"].values, dtype=float)
    values = np.asarray(values, dtype=float)
    spectra, frequency = [], None
    by_sweep = _indices_by_sweep(observed)
    # One segment length for all sweeps, so their spectra share frequencies.
    segment = min(256, min(order.size for order in by_sweep.values()))
    for sweep, order in by_sweep.items():
        steps = np.diff(times[order])
        if steps.size == 0 or not np.allclose(steps, steps[0], rtol=1e-6):
            raise ValueError(
                f"A power spectrum of {variable!r} needs evenly spaced samples; "
                f"sweep {sweep} is not. Resample the recording on a regular grid."
            )
        signal = values[order]
        frequency, power = scipy.signal.welch(
            signal - np.mean(signal), fs=1.0 / steps[0], nperseg=segment
        )
        spectra.append(power)
    return frequency, np.mean(spectra, axis=0)
