"""Population activity: loading pooled rates, bursts, spectra, leave-future-out.

The statistics are computed on plain arrays first (one row per posterior draw)
and returned as data, so a posterior predictive check is "the same function on
the observed series and on every predicted series".
"""

from __future__ import annotations

import dataclasses
import pathlib

import arviz as az
import numpy as np
import scipy.signal
import scipy.special
import xarray as xr
from numpyro.infer import Predictive

from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import build_model
from bayesude.inference.observations import pointwise_log_likelihood
from bayesude.inference.prepared_data import prepare_data
from bayesude.predictive_checks import observed_variable


def load_population_counts(
    path: str | pathlib.Path,
    window_s: tuple[float, float] | None = None,
    bin_s: float = 0.05,
) -> xr.Dataset:
    """Pooled spike counts of a population, in the layout of ``docs/conventions.md``.

    Parameters
    ----------
    path
        A NetCDF file with ``spike_count (unit, time)`` in fine bins (e.g.
        ``data/population/rodent_hippocampus_population_rate_10ms.nc``) and a
        ``bin_width_s`` attribute.
    window_s
        ``(start, end)`` in s to keep, or None for all.
    bin_s
        Width of the bins to pool into, in s; a whole multiple of the file's.

    Returns
    -------
    xarray.Dataset
        ``population_count (sweep=1, time)``: spikes of all units per bin
        (role observed, units "count"); ``population_rate``: the same in Hz
        per unit. ``time`` (bin centres) in s.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No population file at {path}; check the path.")
    with xr.open_dataset(path) as source:
        if "spike_count" not in source or "bin_width_s" not in source.attrs:
            raise ValueError(
                f"{path}: expected a variable 'spike_count (unit, time)' and the "
                f"attribute 'bin_width_s'; found variables {sorted(source.data_vars)}."
            )
        file_bin_s = float(source.attrs["bin_width_s"])
        factor = int(round(bin_s / file_bin_s))
        if factor < 1 or not np.isclose(factor * file_bin_s, bin_s):
            raise ValueError(
                f"{path}: bin_s={bin_s} must be a whole multiple of the file's "
                f"bins of {file_bin_s} s."
            )
        pooled = source["spike_count"].astype(float).sum("unit")
        num_units = source.sizes["unit"]
        edges = pooled["time"].values - file_bin_s / 2
        if window_s is not None:
            keep = (edges >= window_s[0]) & (edges + file_bin_s <= window_s[1] + 1e-9)
            pooled = pooled.isel(time=np.flatnonzero(keep))
        num_bins = pooled.sizes["time"] // factor
        counts = pooled.values[: num_bins * factor].reshape(num_bins, factor).sum(1)
        start = float(pooled["time"].values[0] - file_bin_s / 2)
        attributes = {k: source.attrs[k] for k in ("source", "license", "origin")}
    times = start + bin_s * (np.arange(num_bins) + 0.5)
    return xr.Dataset(
        {
            "population_count": (
                ("sweep", "time"),
                counts[None],
                {"units": "count", "role": "observed"},
            ),
            "population_rate": (
                ("sweep", "time"),
                counts[None] / (bin_s * num_units),
                {"units": "Hz", "role": "observed"},
            ),
        },
        coords={"sweep": [0], "time": ("time", times, {"units": "s"})},
        attrs={
            **attributes,
            "source_file": path.name,
            "bin_s": bin_s,
            "num_units": num_units,
        },
    )


def power_spectrum(
    series: np.ndarray, dt_s: float, segment_s: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density of each row of ``series``.

    Parameters
    ----------
    series
        Shape ``(..., num_times)``, evenly sampled every ``dt_s`` seconds.
    dt_s
        Sampling interval in s.
    segment_s
        Welch segment length in s (frequency resolution 1/segment_s Hz).

    Returns
    -------
    frequencies_hz, density
        Shapes ``(num_frequencies,)`` and ``(..., num_frequencies)``; the
        density is in (units of series)² / Hz, mean removed.
    """
    series = np.asarray(series, dtype=float)
    num_per_segment = min(series.shape[-1], max(8, int(round(segment_s / dt_s))))
    return scipy.signal.welch(
        series, fs=1.0 / dt_s, nperseg=num_per_segment, detrend="constant", axis=-1
    )


@dataclasses.dataclass(frozen=True)
class BurstStatistics:
    """Bursts and silences of a population signal (arrays over rows).

    Attributes
    ----------
    burst_rate_hz
        Bursts per second.
    mean_burst_s, mean_silence_s
        Mean duration of a burst and of the gap between bursts, in s (NaN
        when there is none).
    fraction_bursting
        Fraction of time above threshold.
    """

    burst_rate_hz: np.ndarray
    mean_burst_s: np.ndarray
    mean_silence_s: np.ndarray
    fraction_bursting: np.ndarray

    def as_dataset(self) -> xr.Dataset:
        return xr.Dataset(
            {
                name: (("row",) if np.ndim(value) else (), value)
                for name, value in dataclasses.asdict(self).items()
            }
        )


def burst_statistics(
    series: np.ndarray, dt_s: float, threshold: float, min_burst_s: float = 0.0
) -> BurstStatistics:
    """Bursts: runs where ``series`` is above ``threshold``, per row.

    Parameters
    ----------
    series
        Shape ``(num_rows, num_times)`` or ``(num_times,)``.
    dt_s
        Sampling interval in s.
    threshold
        Level above which the population is bursting, in the series' units
        (e.g. twice the median rate).
    min_burst_s
        Runs shorter than this are not counted as bursts.
    """
    rows = np.atleast_2d(np.asarray(series, dtype=float))
    results = [_row_bursts(row, dt_s, threshold, min_burst_s) for row in rows]
    stacked = np.array(results).T
    if np.ndim(series) == 1:
        stacked = stacked[:, 0]
    return BurstStatistics(*stacked)


def _row_bursts(row, dt_s, threshold, min_burst_s) -> tuple[float, ...]:
    above = np.concatenate([[False], row > threshold, [False]])
    changes = np.flatnonzero(np.diff(above.astype(int)))
    starts, ends = changes[::2], changes[1::2]
    durations = (ends - starts) * dt_s
    keep = durations >= min_burst_s
    starts, ends, durations = starts[keep], ends[keep], durations[keep]
    total_s = row.size * dt_s
    silences = (starts[1:] - ends[:-1]) * dt_s
    return (
        durations.size / total_s,
        durations.mean() if durations.size else np.nan,
        silences.mean() if silences.size else np.nan,
        durations.sum() / total_s,
    )


def predictive_statistics(
    idata: az.InferenceData,
    variable: str,
    *,
    threshold: float,
    dt_s: float,
    segment_s: float = 10.0,
) -> xr.Dataset:
    """Spectra and burst statistics of the observed series and of every predicted one.

    Parameters
    ----------
    idata
        A fit with a single-sweep ``variable`` in ``posterior_predictive``.
    variable
        The observed data variable, e.g. ``"population_count"``.
    threshold, dt_s, segment_s
        As in :func:`burst_statistics` and :func:`power_spectrum`.

    Returns
    -------
    xarray.Dataset
        ``observed_<stat>`` scalars and ``predicted_<stat> (draw,)`` for every
        burst statistic; ``observed_spectrum (frequency,)`` and
        ``predicted_spectrum (draw, frequency)``; ``frequency`` in Hz.
    """
    observed = idata.observed_data[variable].values
    predicted = idata.posterior_predictive[variable].values
    predicted = predicted.reshape(-1, predicted.shape[-1])
    predicted = predicted[np.all(np.isfinite(predicted), axis=1)]

    frequencies, observed_density = power_spectrum(observed, dt_s, segment_s)
    _, predicted_density = power_spectrum(predicted, dt_s, segment_s)
    statistics = xr.Dataset(
        {
            "observed_spectrum": (("frequency",), observed_density),
            "predicted_spectrum": (("draw", "frequency"), predicted_density),
        },
        coords={"frequency": ("frequency", frequencies, {"units": "Hz"})},
    )
    observed_bursts = burst_statistics(observed, dt_s, threshold)
    predicted_bursts = burst_statistics(predicted, dt_s, threshold)
    for name in dataclasses.asdict(observed_bursts):
        statistics[f"observed_{name}"] = float(getattr(observed_bursts, name))
        statistics[f"predicted_{name}"] = ("draw", getattr(predicted_bursts, name))
    return statistics


def leave_future_out(
    spec: ModelSpecification,
    idata: az.InferenceData,
    data: xr.Dataset,
    subject: str = "subject",
    max_draws: int = 200,
) -> dict[str, float]:
    """Log predictive density of observations after the fitted window.

    The fit saw only the first part of ``data``; each posterior draw is solved
    forward over all of ``data`` and scored on the observations after the last
    fitted time.

    Parameters
    ----------
    spec
        The specification of the fit.
    idata
        The fit (its ``observed_data`` gives the last fitted time).
    data
        The whole series, fitted window first, same time units as the fit.
    subject
        For error messages.
    max_draws
        At most this many posterior draws, spread evenly.

    Returns
    -------
    dict
        ``elpd`` (sum over future observations of the log mean predictive
        density), ``elpd_se`` (its standard error from the pointwise terms),
        ``num_observations`` and ``elpd_per_observation``.
    """
    if spec.solver.adjoint == "automatic":
        # No gradients are taken here; any concrete adjoint solves the same.
        solver = dataclasses.replace(spec.solver, adjoint="recursive_checkpoint")
        spec = dataclasses.replace(spec, solver=solver)
    prepared = prepare_data(spec, data, subject)
    built = build_model(spec, prepared)
    samples = _thinned_posterior(idata, built.latent_sizes, max_draws)
    predictive = Predictive(
        built.model,
        posterior_samples=samples,
        return_sites=[f"{n}_trajectory" for n in prepared.observed]
        + ["solver_success"],
    )
    import jax

    outputs = predictive(jax.random.key(0), observe=False, record_trajectories=True)
    last_fitted = max(
        float(np.max(observed_variable(idata, str(name))["time"].values))
        for name in idata.observed_data.data_vars
    )
    factor = _time_factor(idata, prepared.time_units)
    pointwise = []
    solved = np.asarray(outputs["solver_success"], dtype=bool)
    for name, variable in prepared.observed.items():
        future = prepared.times[variable.time_index] * factor > last_fitted + 1e-9
        state = np.asarray(outputs[f"{name}_trajectory"])[
            :, variable.sweep_index[future], variable.time_index[future]
        ]
        state = np.where(solved[:, None], state, 0.0)
        draws = {k: np.asarray(v)[None] for k, v in samples.items()}
        log_density = pointwise_log_likelihood(
            spec.observation_model(name),
            name,
            draws,
            state[None],
            variable.values[future],
        )[0]
        log_density = np.where(solved[:, None], log_density, -np.inf)
        pointwise.append(
            scipy.special.logsumexp(log_density, axis=0) - np.log(log_density.shape[0])
        )
    terms = np.concatenate(pointwise)
    if terms.size == 0:
        raise ValueError(
            f"Subject {subject!r}: no observation after the fitted window "
            f"(ends at {last_fitted}); pass the whole series as data."
        )
    return {
        "elpd": float(terms.sum()),
        "elpd_se": float(np.sqrt(terms.size * np.var(terms))),
        "num_observations": int(terms.size),
        "elpd_per_observation": float(terms.mean()),
    }


def _thinned_posterior(idata, latent_sizes, max_draws) -> dict[str, np.ndarray]:
    stacked = idata.posterior.stack(sample=("chain", "draw"))
    total = stacked.sizes["sample"]
    chosen = np.unique(np.linspace(0, total - 1, min(max_draws, total)).astype(int))
    samples = {}
    for name in latent_sizes:
        values = stacked[name].transpose("sample", ...).values[chosen]
        samples[name] = values
    return samples


def _time_factor(idata: az.InferenceData, prepared_units: str) -> float:
    """Factor from the prepared data's time units to the fit's stored times."""
    stored = idata.posterior.attrs.get("time_units", prepared_units)
    if stored == prepared_units:
        return 1.0
    return {("ms", "s"): 1e-3, ("s", "ms"): 1e3}[(prepared_units, stored)]
