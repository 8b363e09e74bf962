"""Predictive accuracy and model comparison: PSIS-LOO, WAIC, leave-future-out.

Each method answers a different question, and for time series they differ:

* **PSIS-LOO and WAIC** estimate how well a model predicts one left-out
  observation given all the others. For a trace sampled densely in time, the
  neighbours of a left-out point are in the training data, so this measures
  *interpolation* skill: how well the model fills a gap in a recording.
* **Leave-future-out** (:func:`bayesude.forecast.leave_future_out`) fits on
  the recording up to a time and scores the next block of time: *forecasting*
  skill, the question to ask when a model is meant to extrapolate the dynamics.
* **Leave-one-subject-out** (a new cell or animal) needs a hierarchical model
  fitted across subjects; it is not available yet (see the Limitations in the
  README).

Several observed variables
--------------------------
One PSIS-LOO unit is one observed value. Variables on the same observation
dimension (same name and size) describe the same points and their pointwise
log-likelihoods are summed (joint per point); variables on different dimensions
(a voltage trace and per-sweep spike counts) are different observations and are
concatenated, so elpd is the sum over both. ``var_name`` restricts the
comparison to one variable.
"""

from __future__ import annotations

import math
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "TIME_SERIES_NOTE",
    "compare_models",
    "leave_one_subject_out",
    "loo_summary",
    "pareto_k_threshold",
    "pointwise_log_likelihood",
]

SAMPLE_DIMS = ("chain", "draw")
#: Largest number of non-finite entries located in an error message.
MAX_LOCATED = 5

TIME_SERIES_NOTE = (
    "PSIS-LOO and WAIC leave out one time point at a time while its neighbours "
    "stay in the fit, so on a time series they estimate interpolation skill "
    "(filling a gap in a recording), not forecasting. To ask how well a model "
    "predicts the future of a recording, use leave-future-out cross-validation "
    "(bayesude.forecast.leave_future_out); to ask how it generalises to a new "
    "subject, leave-one-subject-out needs a hierarchical fit (not available yet)."
)


def pareto_k_threshold(num_draws: int) -> float:
    """Largest Pareto k for which PSIS is reliable with ``num_draws`` draws.

    ``min(1 - 1 / log10(S), 0.7)`` (Vehtari et al. 2024, "Pareto smoothed
    importance sampling"): 0.5 for S = 100, 0.667 for S = 1,000 and 0.7 from
    S = 2,154 on.

    Raises
    ------
    ValueError
        If ``num_draws`` is below 11 (the formula has no meaning there).
    """
    if num_draws <= 10:
        raise ValueError(
            f"PSIS needs more than 10 posterior draws; got num_draws={num_draws}."
        )
    return min(1.0 - 1.0 / math.log10(num_draws), 0.7)


def pointwise_log_likelihood(
    idata: az.InferenceData, var_name: str | None = None, model: str = "the fit"
) -> xr.DataArray:
    """Pointwise log-likelihood as one ``(chain, draw, observation)`` array.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit with a ``log_likelihood`` group.
    var_name : str, optional
        Use only this observed variable. By default all are combined by the
        rule of the module docstring.
    model : str
        Name used in error messages.

    Raises
    ------
    ValueError
        If there is no log-likelihood, ``var_name`` is not in it, or an entry is
        non-finite (-inf or NaN). The message counts the bad entries per
        variable and locates the first few (chain, draw, observation).
    """
    log_likelihood = _log_likelihood_group(idata, var_name, model)
    _check_finite(log_likelihood, model)
    groups: dict[tuple, xr.DataArray] = {}
    for name in log_likelihood.data_vars:
        values = log_likelihood[name].transpose(*SAMPLE_DIMS, ...)
        key = tuple((d, s) for d, s in values.sizes.items() if d not in SAMPLE_DIMS)
        groups[key] = values if key not in groups else groups[key] + values
    num_chains, num_draws = (log_likelihood.sizes[d] for d in SAMPLE_DIMS)
    flattened = [g.values.reshape(num_chains, num_draws, -1) for g in groups.values()]
    return xr.DataArray(
        np.concatenate(flattened, axis=-1),
        dims=("chain", "draw", "observation"),
        coords={d: log_likelihood[d].values for d in SAMPLE_DIMS},
    )


def loo_summary(idata: az.InferenceData, var_name: str | None = None) -> dict:
    """PSIS-LOO and WAIC of one fit, with the sample-size Pareto-k threshold.

    Returns
    -------
    dict
        ``elpd_loo``, ``elpd_loo_se``, ``p_loo``, ``elpd_waic``,
        ``elpd_waic_se``, ``max_pareto_k``, ``pareto_k_threshold``,
        ``num_high_pareto_k`` (observations above the threshold) and
        ``problems`` (a list of sentences).

    Raises
    ------
    ValueError
        As :func:`pointwise_log_likelihood`.
    """
    model = str(idata.posterior.attrs.get("model_name", "the fit"))
    ready = _loo_ready(idata, var_name, model)
    with warnings.catch_warnings():
        # Pareto k and WAIC's variance warnings are reported as problems.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        loo = az.loo(ready, pointwise=True)
        waic = az.waic(ready)
    pareto_k = loo["pareto_k"].values
    threshold = pareto_k_threshold(_num_samples(ready))
    num_high = int(np.sum(pareto_k > threshold))
    problems = []
    if num_high:
        problems.append(
            f"Pareto k above {threshold:.2f} (max {pareto_k.max():.2f}) at "
            f"{num_high} of {pareto_k.size} observations: PSIS-LOO is unreliable "
            "there (refit leaving those points out, or run more draws)"
        )
    return {
        "elpd_loo": float(loo["elpd_loo"]),
        "elpd_loo_se": float(loo["se"]),
        "p_loo": float(loo["p_loo"]),
        "elpd_waic": float(waic["elpd_waic"]),
        "elpd_waic_se": float(waic["se"]),
        "max_pareto_k": float(pareto_k.max()),
        "pareto_k_threshold": threshold,
        "num_high_pareto_k": num_high,
        "problems": problems,
    }


def compare_models(
    idatas_for_one_subject: dict[str, az.InferenceData],
    ic: str = "loo",
    var_name: str | None = None,
) -> pd.DataFrame:
    """Rank the models fitted to one subject by expected log predictive density.

    Parameters
    ----------
    idatas_for_one_subject : dict of str to arviz.InferenceData
        The fits of one subject, keyed by model name, each with a
        ``log_likelihood`` group over the same observations.
    ic : {"loo", "waic"}
        PSIS-LOO (the default; it comes with Pareto-k diagnostics) or WAIC.
    var_name : str, optional
        Compare on one observed variable only; by default all observed
        variables are combined (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        ``arviz.compare``: one row per model, best first (``rank``,
        ``elpd_<ic>``, ``p_<ic>``, ``elpd_diff``, ``weight``, ``se``, ``dse``,
        ``warning``, ``scale``), plus for LOO ``pareto_k_threshold`` and
        ``num_high_pareto_k``. ``warning`` is True where Pareto k exceeds the
        sample-size threshold (LOO) or WAIC's variance check fails.

    Raises
    ------
    ValueError
        If no fit is given, ``ic`` is unknown, a fit has no or a non-finite
        log-likelihood (counted and located), or the fits differ in their
        observations. The message names the model.
    """
    if not idatas_for_one_subject:
        raise ValueError(
            "compare_models needs at least one fit in idatas_for_one_subject; "
            "got an empty dict."
        )
    if ic not in ("loo", "waic"):
        raise ValueError(f"ic must be 'loo' or 'waic'; got {ic!r}.")
    ready = {
        model: _loo_ready(idata, var_name, model)
        for model, idata in idatas_for_one_subject.items()
    }
    _check_same_observations(ready)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        # ArviZ itself uses a pandas argument that pandas has deprecated.
        warnings.filterwarnings("ignore", message=".*inplace keyword")
        table = az.compare(ready, ic=ic)
    if ic == "loo":
        _add_pareto_k_columns(table, ready)
    return table


def leave_one_subject_out(*args, **kwargs) -> pd.DataFrame:
    """Not available yet: how well a model generalises to a new subject.

    Raises
    ------
    NotImplementedError
        Always. It needs a hierarchical model fitted across subjects, whose
        per-subject log-likelihood can be left out one subject at a time.
    """
    raise NotImplementedError(
        "Leave-one-subject-out needs a hierarchical fit across subjects, which "
        "bayesude does not have yet. Compare models per subject with "
        "compare_models (interpolation) or bayesude.forecast.leave_future_out "
        "(forecasting)."
    )


def _add_pareto_k_columns(table: pd.DataFrame, ready: dict) -> None:
    thresholds, num_high = [], []
    for model in table.index:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            # Degenerate tails make ArviZ's Pareto fit divide by zero; k is
            # then reported as high, which is what the table shows.
            warnings.simplefilter("ignore", RuntimeWarning)
            pareto_k = az.loo(ready[model], pointwise=True)["pareto_k"].values
        threshold = pareto_k_threshold(_num_samples(ready[model]))
        thresholds.append(threshold)
        num_high.append(int(np.sum(pareto_k > threshold)))
    table["pareto_k_threshold"] = thresholds
    table["num_high_pareto_k"] = num_high
    table["warning"] = [count > 0 for count in num_high]


def _num_samples(idata: az.InferenceData) -> int:
    return int(np.prod([idata.posterior.sizes[d] for d in SAMPLE_DIMS]))


def _log_likelihood_group(idata, var_name, model) -> xr.Dataset:
    if "log_likelihood" not in idata.groups() or not idata.log_likelihood.data_vars:
        raise ValueError(
            f"Model {model!r} has no log_likelihood group, so it cannot be "
            "compared by LOO or WAIC; refit it with the log-likelihood stored."
        )
    log_likelihood = idata.log_likelihood
    if var_name is None:
        return log_likelihood
    if var_name not in log_likelihood:
        raise ValueError(
            f"Model {model!r} has no log-likelihood for var_name={var_name!r}; it "
            f"has {sorted(map(str, log_likelihood.data_vars))}."
        )
    return log_likelihood[[var_name]]


def _check_finite(log_likelihood: xr.Dataset, model: str) -> None:
    messages = []
    for name, values in log_likelihood.data_vars.items():
        array = values.transpose(*SAMPLE_DIMS, ...).values
        bad = ~np.isfinite(array)
        if not bad.any():
            continue
        num_neg_inf = int(np.sum(np.isneginf(array)))
        num_nan = int(np.sum(np.isnan(array)))
        other_dims = [d for d in values.transpose(*SAMPLE_DIMS, ...).dims]
        located = [
            ", ".join(f"{d} {i}" for d, i in zip(other_dims, index))
            for index in np.argwhere(bad)[:MAX_LOCATED]
        ]
        messages.append(
            f"variable {str(name)!r} has {int(bad.sum())} non-finite values "
            f"({num_neg_inf} -inf, {num_nan} NaN, others +inf) at "
            f"{'; '.join(located)}{' …' if bad.sum() > MAX_LOCATED else ''}"
        )
    if messages:
        raise ValueError(
            f"Model {model!r}: the pointwise log-likelihood is non-finite: "
            f"{' | '.join(messages)}. A -inf usually marks a draw whose ODE solve "
            "failed; LOO and WAIC need finite values. Refit with a tighter prior "
            "or a more robust solver, or drop those draws explicitly before "
            "comparing."
        )


#: Fewest posterior draws for which PSIS can fit its Pareto tails.
MINIMUM_DRAWS_FOR_LOO = 10


def _loo_ready(idata, var_name, model) -> az.InferenceData:
    num_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if num_draws < MINIMUM_DRAWS_FOR_LOO:
        raise ValueError(
            f"{model} has {num_draws} posterior draw(s); PSIS-LOO and WAIC need at "
            f"least {MINIMUM_DRAWS_FOR_LOO} (a MAP fit has one). Fit with NUTS or "
            "SVI to compare models."
        )
    combined = pointwise_log_likelihood(idata, var_name, model)
    # ArviZ needs the posterior to estimate the relative efficiency.
    return az.InferenceData(
        posterior=idata.posterior,
        log_likelihood=xr.Dataset({"observations": combined}),
    )


def _check_same_observations(ready: dict[str, az.InferenceData]) -> None:
    counts = {m: i.log_likelihood.sizes["observation"] for m, i in ready.items()}
    reference_model, reference = next(iter(counts.items()))
    for model, count in counts.items():
        if count != reference:
            raise ValueError(
                f"Model {model!r} has {count} observations in its log-likelihood "
                f"but model {reference_model!r} has {reference}; comparison needs "
                "every model fitted to the same observations of one subject."
            )
