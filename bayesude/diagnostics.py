"""Convergence and predictive-accuracy diagnostics for fitted models.

Every function here consumes fits in the layout of ``docs/conventions.md``
(one ``arviz.InferenceData`` per subject and model) and returns plain data: a
dict for one fit, a ``pandas.DataFrame`` for several. Nothing is printed.

The convergence rule is deliberately simple and strict, so that a row marked
converged can be trusted without reading the numbers:

* at least two chains (one chain cannot reveal chains stuck in different modes),
* rank-normalised split R-hat below 1.01 on every mechanistic quantity,
* bulk effective sample size of at least 400 on every mechanistic quantity,
* no divergent transitions after warm-up.

Neural-network weights (posterior variables named ``<term>_weights``) are left
out of R-hat and ESS: permuting hidden units leaves the network unchanged, so
chains legitimately settle on different but equivalent weight vectors and their
R-hat says nothing about whether the fit has converged.
"""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["compare_models", "fit_summary", "summarise_fits"]

RHAT_THRESHOLD = 1.01
MIN_ESS = 400
MIN_NUM_CHAINS = 2
NETWORK_WEIGHTS_SUFFIX = "_weights"
SAMPLE_DIMS = ("chain", "draw")


def fit_summary(idata: az.InferenceData) -> dict:
    """Summarise the convergence and predictive accuracy of one fit.

    Parameters
    ----------
    idata : arviz.InferenceData
        One fit (one subject, one model) in the layout of
        ``docs/conventions.md``. Needs a ``posterior`` group; every other group
        is optional and its statistics are NaN or 0 when it is missing.

    Returns
    -------
    dict
        One row with keys ``subject``, ``model``, ``max_rhat``,
        ``max_rhat_network_weights``, ``min_ess_bulk``, ``min_ess_tail``,
        ``divergences``, ``solver_failures``, ``warmup_solver_failures``,
        ``elpd_loo``, ``elpd_loo_se``, ``p_loo``, ``max_pareto_k``,
        ``wall_time_s``, ``num_chains``, ``num_draws``, ``converged`` and
        ``problems`` (plain-language findings joined by ``"; "``, empty when
        there are none).

    Raises
    ------
    ValueError
        If ``idata`` has no ``posterior`` group.

    Notes
    -----
    ``max_rhat``, ``min_ess_bulk`` and ``min_ess_tail`` are taken over every
    element of every posterior variable except the network weights, whose
    largest R-hat is reported separately as ``max_rhat_network_weights`` (NaN
    when the model has no neural term). A statistic that cannot be computed
    (one chain, constant or non-finite draws) makes the extreme NaN, and a NaN
    never passes the convergence rule.

    ``converged`` is ``num_chains >= 2 and max_rhat < 1.01 and
    min_ess_bulk >= 400 and divergences == 0``. ``problems`` also lists
    findings that do not change ``converged`` but deserve a look: low tail
    ESS, proposals rejected because the ODE solve failed, high Pareto k and a
    log-likelihood that LOO cannot use. Solver failures during warm-up are
    counted in ``warmup_solver_failures`` only, since warm-up draws are
    discarded.

    PSIS-LOO uses the pointwise log-likelihood of all observed variables.
    Variables whose observation dimensions are identical (same names and
    sizes) describe the same observations and are summed element by element;
    variables with different observation dimensions are different observations
    and are concatenated. With the conventions' one ``<variable>_observation``
    dimension per observed variable, several observed variables are therefore
    concatenated. ``max_pareto_k`` is compared with ArviZ's sample-size
    dependent threshold (0.7 for 2,200 or more draws, a little lower below).
    """
    posterior = _require_posterior(idata)
    num_chains = posterior.sizes["chain"]
    num_draws = posterior.sizes["draw"]

    convergence = _convergence_statistics(posterior)
    counts = _transition_counts(idata)
    loo = _loo_statistics(idata)

    row = {
        "subject": posterior.attrs.get("subject", ""),
        "model": posterior.attrs.get("model_name", ""),
        "max_rhat": convergence["max_rhat"],
        "max_rhat_network_weights": convergence["max_rhat_network_weights"],
        "min_ess_bulk": convergence["min_ess_bulk"],
        "min_ess_tail": convergence["min_ess_tail"],
        **counts,
        "elpd_loo": loo["elpd_loo"],
        "elpd_loo_se": loo["elpd_loo_se"],
        "p_loo": loo["p_loo"],
        "max_pareto_k": loo["max_pareto_k"],
        "wall_time_s": float(posterior.attrs.get("wall_time_s", np.nan)),
        "num_chains": int(num_chains),
        "num_draws": int(num_draws),
    }
    row["converged"] = _is_converged(row)
    problems = _convergence_problems(row, convergence) + loo["problems"]
    problems += _solver_problems(counts)
    row["problems"] = "; ".join(problems)
    return row


def summarise_fits(idatas: list[az.InferenceData]) -> pd.DataFrame:
    """Summarise several fits, one row per subject and model.

    Parameters
    ----------
    idatas : list of arviz.InferenceData
        Fits in the layout of ``docs/conventions.md``.

    Returns
    -------
    pandas.DataFrame
        One row per fit, in the order given, with the columns of
        :func:`fit_summary`.
    """
    rows = [fit_summary(idata) for idata in idatas]
    return pd.DataFrame(rows, columns=_SUMMARY_COLUMNS)


def compare_models(idatas_for_one_subject: dict[str, az.InferenceData]) -> pd.DataFrame:
    """Rank the models fitted to one subject by PSIS-LOO expected log density.

    Parameters
    ----------
    idatas_for_one_subject : dict of str to arviz.InferenceData
        The fits of one subject, keyed by model name. Every fit needs a
        ``log_likelihood`` group over the same observations.

    Returns
    -------
    pandas.DataFrame
        ``arviz.compare(..., ic="loo")``: one row per model, best first, with
        ``rank``, ``elpd_loo``, ``p_loo``, ``elpd_diff`` (difference to the best
        model), ``weight``, ``se``, ``dse`` (standard error of ``elpd_diff``),
        ``warning`` and ``scale``.

    Raises
    ------
    ValueError
        If no fit is given, if a fit has no log-likelihood or a non-finite
        one, or if the fits do not share the same number of observations. The
        message names the model.

    Notes
    -----
    Several observed variables are combined as in :func:`fit_summary`.
    """
    if not idatas_for_one_subject:
        raise ValueError(
            "compare_models needs at least one fit in idatas_for_one_subject; "
            "got an empty dict."
        )
    loo_ready = {
        model: _loo_ready_fit(idata, model)
        for model, idata in idatas_for_one_subject.items()
    }
    _check_same_observations(loo_ready)
    with warnings.catch_warnings():
        # High Pareto k is reported in the "warning" column of the result.
        warnings.simplefilter("ignore", UserWarning)
        return az.compare(loo_ready, ic="loo")


_SUMMARY_COLUMNS = [
    "subject",
    "model",
    "converged",
    "max_rhat",
    "max_rhat_network_weights",
    "min_ess_bulk",
    "min_ess_tail",
    "divergences",
    "solver_failures",
    "warmup_solver_failures",
    "elpd_loo",
    "elpd_loo_se",
    "p_loo",
    "max_pareto_k",
    "wall_time_s",
    "num_chains",
    "num_draws",
    "problems",
]


def _require_posterior(idata: az.InferenceData) -> xr.Dataset:
    if "posterior" not in idata.groups():
        raise ValueError(
            "fit_summary needs an InferenceData with a 'posterior' group; the "
            f"one given has groups {idata.groups()}."
        )
    return idata.posterior


def _is_network_weights(name: str) -> bool:
    return name.endswith(NETWORK_WEIGHTS_SUFFIX)


def _per_variable_extreme(
    statistic: xr.Dataset, names: list[str], reduce_fn
) -> dict[str, float]:
    """Reduce each variable of an ArviZ statistic over its elements.

    ``reduce_fn`` is ``np.max`` or ``np.min``, which propagate NaN on purpose:
    an element whose statistic cannot be computed must not be hidden.
    """
    return {name: float(reduce_fn(statistic[name].values)) for name in names}


def _overall_extreme(per_variable: dict[str, float], reduce_fn) -> float:
    if not per_variable:
        return np.nan
    return float(reduce_fn(list(per_variable.values())))


def _convergence_statistics(posterior: xr.Dataset) -> dict:
    names = [str(name) for name in posterior.data_vars]
    mechanistic = [name for name in names if not _is_network_weights(name)]
    weights = [name for name in names if _is_network_weights(name)]

    with warnings.catch_warnings():
        # ArviZ warns on one chain and on constant draws; both become NaN here
        # and are explained in ``problems``.
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(posterior, method="rank")
        ess_bulk = az.ess(posterior, method="bulk")
        ess_tail = az.ess(posterior, method="tail")

    rhat_by_variable = _per_variable_extreme(rhat, mechanistic, np.max)
    ess_bulk_by_variable = _per_variable_extreme(ess_bulk, mechanistic, np.min)
    ess_tail_by_variable = _per_variable_extreme(ess_tail, mechanistic, np.min)
    weights_rhat = _per_variable_extreme(rhat, weights, np.max)
    return {
        "max_rhat": _overall_extreme(rhat_by_variable, np.max),
        "max_rhat_network_weights": _overall_extreme(weights_rhat, np.max),
        "min_ess_bulk": _overall_extreme(ess_bulk_by_variable, np.min),
        "min_ess_tail": _overall_extreme(ess_tail_by_variable, np.min),
        "rhat_by_variable": rhat_by_variable,
        "ess_bulk_by_variable": ess_bulk_by_variable,
        "ess_tail_by_variable": ess_tail_by_variable,
    }


def _summed_flag(idata: az.InferenceData, group: str, name: str) -> int:
    """Number of transitions flagged by ``name`` in ``group``; 0 if absent."""
    if group not in idata.groups() or name not in idata[group]:
        return 0
    return int(idata[group][name].values.astype(np.int64).sum())


def _transition_counts(idata: az.InferenceData) -> dict[str, int]:
    return {
        "divergences": _summed_flag(idata, "sample_stats", "diverging"),
        "solver_failures": _summed_flag(idata, "sample_stats", "solver_failure"),
        "warmup_solver_failures": _summed_flag(
            idata, "warmup_sample_stats", "solver_failure"
        ),
    }


def _counted(count: int, noun: str) -> str:
    """``"1 proposal"``, ``"3 proposals"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _is_converged(row: dict) -> bool:
    # Comparisons with NaN are False, so an uncomputable statistic fails.
    return bool(
        row["num_chains"] >= MIN_NUM_CHAINS
        and row["max_rhat"] < RHAT_THRESHOLD
        and row["min_ess_bulk"] >= MIN_ESS
        and row["divergences"] == 0
    )


def _convergence_problems(row: dict, convergence: dict) -> list[str]:
    problems = []
    if row["num_chains"] < MIN_NUM_CHAINS:
        problems.append("only one chain: convergence cannot be judged")
    else:
        problems += _rhat_problems(convergence["rhat_by_variable"])
    problems += _ess_problems("bulk", convergence["ess_bulk_by_variable"])
    problems += _ess_problems("tail", convergence["ess_tail_by_variable"])
    if row["divergences"] > 0:
        problems.append(_counted(row["divergences"], "divergent transition"))
    return problems


def _rhat_problems(rhat_by_variable: dict[str, float]) -> list[str]:
    problems = []
    for name, value in rhat_by_variable.items():
        if not np.isfinite(value):
            problems.append(
                f"R-hat cannot be computed on {name} (constant or non-finite draws)"
            )
        elif value >= RHAT_THRESHOLD:
            problems.append(f"R-hat {value:.3f} > {RHAT_THRESHOLD} on {name}")
    return problems


def _ess_problems(kind: str, ess_by_variable: dict[str, float]) -> list[str]:
    return [
        f"{kind} ESS {value:.0f} < {MIN_ESS} on {name}"
        for name, value in ess_by_variable.items()
        if np.isfinite(value) and value < MIN_ESS
    ]


def _solver_problems(counts: dict[str, int]) -> list[str]:
    if counts["solver_failures"] == 0:
        return []
    rejected = _counted(counts["solver_failures"], "proposal")
    return [f"{rejected} rejected because the ODE solve failed"]


def _observation_dims(log_likelihood: xr.DataArray) -> tuple:
    return tuple(
        (dim, size)
        for dim, size in log_likelihood.sizes.items()
        if dim not in SAMPLE_DIMS
    )


def _combined_log_likelihood(log_likelihood: xr.Dataset) -> xr.DataArray:
    """Pointwise log-likelihood of all observed variables as one matrix.

    Variables with identical observation dimensions are summed (joint density
    of the same observations); groups with different dimensions are
    concatenated (different observations). Returns ``(chain, draw,
    observation)``.
    """
    groups: dict[tuple, xr.DataArray] = {}
    for name in log_likelihood.data_vars:
        values = log_likelihood[name].transpose(*SAMPLE_DIMS, ...)
        key = _observation_dims(values)
        groups[key] = values if key not in groups else groups[key] + values

    num_chains = log_likelihood.sizes["chain"]
    num_draws = log_likelihood.sizes["draw"]
    flattened = [
        group.values.reshape(num_chains, num_draws, -1) for group in groups.values()
    ]
    return xr.DataArray(
        np.concatenate(flattened, axis=-1),
        dims=("chain", "draw", "observation"),
        coords={
            "chain": log_likelihood["chain"].values,
            "draw": log_likelihood["draw"].values,
        },
    )


def _with_combined_log_likelihood(idata: az.InferenceData) -> az.InferenceData:
    combined = _combined_log_likelihood(idata.log_likelihood)
    # arviz.loo needs the posterior to estimate the relative efficiency.
    return az.InferenceData(
        posterior=idata.posterior,
        log_likelihood=xr.Dataset({"observations": combined}),
    )


def _loo_statistics(idata: az.InferenceData) -> dict:
    missing = {
        "elpd_loo": np.nan,
        "elpd_loo_se": np.nan,
        "p_loo": np.nan,
        "max_pareto_k": np.nan,
    }
    if "log_likelihood" not in idata.groups() or not idata.log_likelihood.data_vars:
        return {**missing, "problems": ["no log-likelihood: LOO not computed"]}

    loo_ready = _with_combined_log_likelihood(idata)
    num_non_finite = int((~np.isfinite(loo_ready.log_likelihood["observations"])).sum())
    if num_non_finite:
        return {
            **missing,
            "problems": [
                f"{_counted(num_non_finite, 'log-likelihood value')} not finite: "
                "LOO not computed"
            ],
        }

    with warnings.catch_warnings():
        # High Pareto k is reported in ``problems`` instead.
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(loo_ready, pointwise=True)
    return {
        "elpd_loo": float(loo["elpd_loo"]),
        "elpd_loo_se": float(loo["se"]),
        "p_loo": float(loo["p_loo"]),
        "max_pareto_k": float(np.max(loo["pareto_k"].values)),
        "problems": _pareto_k_problems(loo["pareto_k"].values, float(loo["good_k"])),
    }


def _pareto_k_problems(pareto_k: np.ndarray, good_k: float) -> list[str]:
    num_bad = int(np.sum(pareto_k > good_k))
    if num_bad == 0:
        return []
    return [
        f"Pareto k {np.max(pareto_k):.2f} > {good_k:.2f} at "
        f"{_counted(num_bad, 'observation')}"
    ]


def _loo_ready_fit(idata: az.InferenceData, model: str) -> az.InferenceData:
    """Check one fit's log-likelihood for LOO and combine its variables."""
    if "log_likelihood" not in idata.groups() or not idata.log_likelihood.data_vars:
        raise ValueError(
            f"Model {model!r} has no log_likelihood group, so it cannot be "
            "compared by LOO; refit it with the log-likelihood stored."
        )
    for name, values in idata.log_likelihood.data_vars.items():
        num_non_finite = int((~np.isfinite(values)).sum())
        if num_non_finite:
            raise ValueError(
                f"Model {model!r} has {num_non_finite} non-finite values in its "
                f"log_likelihood variable {name!r}; LOO needs a finite pointwise "
                "log-likelihood. Recompute the log-likelihood of that fit or "
                "leave the model out of the comparison."
            )
    return _with_combined_log_likelihood(idata)


def _check_same_observations(loo_ready: dict[str, az.InferenceData]) -> None:
    num_observations = {
        model: idata.log_likelihood.sizes["observation"]
        for model, idata in loo_ready.items()
    }
    reference_model, reference = next(iter(num_observations.items()))
    for model, count in num_observations.items():
        if count != reference:
            raise ValueError(
                f"Model {model!r} has {count} observations in its log-likelihood "
                f"but model {reference_model!r} has {reference}; LOO comparison "
                "needs every model fitted to the same observations of one subject."
            )
