"""Leave-future-out cross-validation: how well a model forecasts a recording.

PSIS-LOO scores one time point with its neighbours in the fit (interpolation).
Leave-future-out fits the recording up to a split time and scores the next
block of time, which is the question for a model meant to extrapolate its
dynamics (Bürkner, Gabry and Vehtari 2020, "Approximate leave-future-out
cross-validation for Bayesian time series models").

For split times ``t_1 < t_2 < ... < t_K``, block ``i`` holds the observations
(of every sweep) with ``t_i <= time < t_{i+1}`` (the last block runs to the end
of the recording), and its score is the log predictive density of the whole
block, ``log mean_s p(block | theta_s)``, under a fit to the observations
before ``t_i``. Two ways to get that fit:

* ``method="exact"`` refits at every split;
* ``method="psis"`` refits at the first split and then reweights the draws of
  the last refit by the likelihood of the observations added since, with
  Pareto-smoothed importance sampling, refitting only when Pareto k exceeds
  the sample-size threshold of :func:`bayesude.comparison.pareto_k_threshold`.

Refits are full ``bayesude.fit`` runs on the recording with later observations
masked (NaN), so the cost is one fit per refit.
"""

from __future__ import annotations

import dataclasses
import json

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from bayesude.comparison import pareto_k_threshold
from bayesude.core.specification import ModelSpecification
from bayesude.inference.fit import fit
from bayesude.inference.prepared_data import prepare_data
from bayesude.results import pointwise_log_likelihood_at, specification_of

__all__ = ["leave_future_out"]

METHODS = ("exact", "psis")


def leave_future_out(
    spec: ModelSpecification,
    data: xr.Dataset,
    split_times: list[float],
    *,
    method: str = "psis",
    subject: str = "subject",
    **fit_kwargs,
) -> pd.DataFrame:
    """Leave-future-out cross-validation of one model on one subject.

    Parameters
    ----------
    spec : ModelSpecification
        The model.
    data : xarray.Dataset
        One subject's recording, dimensions ``(sweep, time)``.
    split_times : list of float
        Increasing times, in the units of ``data``'s time coordinate, where
        the training data end and a scored block begins.
    method : {"psis", "exact"}
        Approximate with importance sampling and refit when Pareto k is high
        (default), or refit at every split.
    subject : str
        Name used in messages and stored with the refits.
    **fit_kwargs
        Passed to :func:`bayesude.fit` for every refit (``num_chains``,
        ``num_warmup``, ``num_samples``, ``seed``, ``init``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per split: ``split_time``, ``block_end``,
        ``num_observations`` in the block, ``elpd`` (log predictive density of
        the block), ``refit`` (whether this split was refitted) and
        ``pareto_k`` (NaN where refitted). ``attrs["elpd_lfo"]`` is the sum
        over blocks, ``attrs["num_refits"]`` the number of fits run.

    Raises
    ------
    ValueError
        For an unknown ``method``, split times that are not increasing or
        leave no training or no scored observation, or an observation model
        other than Gaussian or Student-t.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    time = np.asarray(data["time"].values, dtype=float)
    splits = _checked_splits(split_times, time, spec, data, subject)
    block_ends = list(splits[1:]) + [np.inf]

    rows, refit_state = [], None
    for start, end in zip(splits, block_ends):
        row = {"split_time": start, "block_end": end}
        if refit_state is not None and method == "psis":
            row.update(_reweighted(refit_state, start, end))
        if "elpd" not in row:
            refit_state = _refit(spec, data, start, subject, fit_kwargs)
            row.update(_scored(refit_state, start, end), refit=True, pareto_k=np.nan)
        rows.append(row)

    table = pd.DataFrame(
        rows,
        columns=[
            "split_time",
            "block_end",
            "num_observations",
            "elpd",
            "refit",
            "pareto_k",
        ],
    )
    table.attrs["elpd_lfo"] = float(table["elpd"].sum())
    table.attrs["num_refits"] = int(table["refit"].sum())
    return table


@dataclasses.dataclass(frozen=True)
class _Refit:
    """Pointwise log-likelihood of all observations under a fit up to ``split``."""

    split: float
    log_likelihood: np.ndarray  # (sample, observation)
    times: np.ndarray  # (observation,)


def _checked_splits(split_times, time, spec, data, subject) -> np.ndarray:
    splits = np.asarray(split_times, dtype=float)
    if splits.size == 0 or np.any(np.diff(splits) <= 0):
        raise ValueError(
            f"split_times must be a non-empty increasing list; got {list(split_times)}."
        )
    if spec.observation not in ("gaussian", "student_t"):
        raise NotImplementedError(
            f"Leave-future-out supports Gaussian and Student-t observations; the "
            f"model uses {spec.observation!r}. Use PSIS-LOO "
            "(bayesude.comparison.compare_models) instead."
        )
    observed = np.zeros(time.size, dtype=bool)
    for name in spec.observed:
        values = np.asarray(data[name].values)
        observed |= np.isfinite(values.reshape(-1, time.size)).any(axis=0)
    if not observed[time < splits[0]].any() or not observed[time >= splits[-1]].any():
        raise ValueError(
            f"Subject {subject!r}: every split needs observations before it and the "
            f"last block needs observations after it; the data span "
            f"{time[observed].min()}–{time[observed].max()} and the splits are "
            f"{list(splits)}."
        )
    return splits


def _truncated(spec, data: xr.Dataset, split: float) -> xr.Dataset:
    """``data`` with every observation at or after ``split`` masked (NaN)."""
    truncated = data.copy()
    for name in spec.observed:
        truncated[name] = data[name].where(data["time"] < split)
    return truncated


def _with_fitted_ranges(spec: ModelSpecification, idata) -> ModelSpecification:
    """The fit's specification with each network's input range fixed to the fit's.

    A network maps its inputs to [-1, 1] over the range of the data it was
    fitted on; scoring later data must keep that map.
    """
    fitted = specification_of(idata)
    stored = json.loads(idata.posterior.attrs.get("network_input_ranges", "{}"))
    terms = tuple(
        dataclasses.replace(
            term,
            input_ranges=tuple(
                (name, tuple(bounds)) for name, bounds in stored[term.name].items()
            ),
        )
        for term in fitted.neural_terms
    )
    return dataclasses.replace(fitted, neural_terms=terms)


def _refit(spec, data, split, subject, fit_kwargs) -> _Refit:
    kwargs = {"progress_bar": False, **fit_kwargs}
    idata = fit(spec, _truncated(spec, data, split), subject=subject, **kwargs)
    scoring_spec = _with_fitted_ranges(spec, idata)
    prepared = prepare_data(scoring_spec, data, subject)
    samples = {name: values.values for name, values in idata.posterior.items()}
    log_likelihood = pointwise_log_likelihood_at(scoring_spec, prepared, samples)
    matrices, times = [], []
    for name, values in log_likelihood.items():
        variable = prepared.observed[name]
        matrices.append(values.reshape(-1, values.shape[-1]))
        times.append(prepared.times[variable.time_index])
    return _Refit(split, np.concatenate(matrices, axis=1), np.concatenate(times))


def _block_log_likelihood(refit: _Refit, start: float, end: float) -> np.ndarray:
    """Summed log-likelihood of the observations in ``[start, end)``, per sample."""
    in_block = (refit.times >= start) & (refit.times < end)
    return refit.log_likelihood[:, in_block].sum(axis=1), int(in_block.sum())


def _scored(refit: _Refit, start: float, end: float) -> dict:
    block, count = _block_log_likelihood(refit, start, end)
    elpd = float(logsumexp(block) - np.log(block.size))
    return {"num_observations": count, "elpd": elpd}


def _reweighted(refit: _Refit, start: float, end: float) -> dict:
    """The PSIS approximation at ``start`` from ``refit``, or {} if k is too high."""
    added, _ = _block_log_likelihood(refit, refit.split, start)
    if not np.all(np.isfinite(added)):
        return {}
    log_weights, pareto_k = az.psislw(added)
    pareto_k = float(pareto_k)
    if pareto_k > pareto_k_threshold(added.size):
        return {}
    block, count = _block_log_likelihood(refit, start, end)
    return {
        "num_observations": count,
        "elpd": float(logsumexp(log_weights + block)),
        "refit": False,
        "pareto_k": pareto_k,
    }
