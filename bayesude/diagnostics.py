"""Convergence verdicts for fitted models, returned as data.

Every function here consumes fits in the layout of ``docs/conventions.md``
(one ``arviz.InferenceData`` per subject and model) and returns plain data: a
dict for one fit, a ``pandas.DataFrame`` for several. Nothing is printed;
:mod:`bayesude.report` renders the tables.

The convergence rule is strict, so that a row marked converged can be trusted
without reading the numbers. A fit is converged only when

* at least two chains were run (one chain cannot reveal chains stuck in
  different modes);
* no chain is stuck (a parameter constant over a whole chain) and no two chains
  are identical copies (same seed);
* rank-normalised split R-hat is below 1.01 on every mechanistic quantity and
  on the output of every network over its fitted input range;
* R-hat of the predicted noise-free trajectories is below 1.05 (they are
  stored for a thinned subset of draws, whose Monte Carlo noise alone puts
  R-hat of perfectly mixed chains near 1.02 somewhere in a long trace);
* bulk effective sample size is at least 400 on every mechanistic quantity;
* no divergent transitions after warm-up, and E-BFMI at least 0.3 in every
  chain (where energies are stored).

An R-hat that cannot be computed (NaN, infinite) never passes. Neural-network
weights (posterior variables ``<term>_weights``) are not judged: permuting
hidden units or flipping the signs of a tanh unit leaves the network unchanged,
so chains legitimately settle on different but equivalent weight vectors. Their
largest R-hat is reported and labelled "not identifiable by symmetry".
Low tail ESS, saturated tree depth, failed ODE solves and high Pareto k are
listed as problems worth a look without changing the verdict.
"""

from __future__ import annotations

import itertools
import json
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesude.comparison import compare_models, loo_summary
from bayesude.functions import network_output_draws, trajectory_draws

__all__ = [
    "compare_models",
    "convergence_verdict",
    "fit_summary",
    "summarise_fits",
]

RHAT_THRESHOLD = 1.01
TRAJECTORY_RHAT_THRESHOLD = 1.05
MIN_ESS = 400
MIN_NUM_CHAINS = 2
MIN_BFMI = 0.3
NETWORK_WEIGHTS_SUFFIX = "_weights"
SAMPLE_DIMS = ("chain", "draw")
WEIGHTS_LABEL = "not identifiable by symmetry"

#: Columns of :func:`convergence_verdict`; per-chain columns hold lists.
VERDICT_COLUMNS = [
    "subject",
    "model",
    "converged",
    "num_chains",
    "num_draws",
    "max_rhat",
    "max_rhat_classic",
    "min_ess_bulk",
    "min_ess_tail",
    "max_rhat_network_output",
    "max_rhat_trajectories",
    "max_rhat_network_weights",
    "network_weights",
    "divergences",
    "divergences_per_chain",
    "min_bfmi",
    "bfmi_per_chain",
    "tree_depth_saturation",
    "solver_failures",
    "solver_failures_per_chain",
    "warmup_solver_failures",
    "warmup_solver_failures_per_chain",
    "stuck_chains",
    "duplicate_chains",
    "wall_time_s",
    "problems",
]
LOO_COLUMNS = [
    "elpd_loo",
    "elpd_loo_se",
    "p_loo",
    "elpd_waic",
    "elpd_waic_se",
    "max_pareto_k",
    "pareto_k_threshold",
    "num_high_pareto_k",
]
#: Columns of :func:`summarise_fits`: the verdict, then predictive accuracy.
SUMMARY_COLUMNS = VERDICT_COLUMNS[:-1] + LOO_COLUMNS + ["problems"]
PER_CHAIN_COLUMNS = [name for name in VERDICT_COLUMNS if name.endswith("_per_chain")]


def convergence_verdict(idata: az.InferenceData) -> dict:
    """Judge the convergence of one fit.

    Parameters
    ----------
    idata : arviz.InferenceData
        One fit (one subject, one model) in the layout of
        ``docs/conventions.md``. Needs a ``posterior`` group; every other group
        is optional.

    Returns
    -------
    dict
        One row with the keys of ``VERDICT_COLUMNS``. ``max_rhat`` is
        rank-normalised split R-hat (ArviZ ``method="rank"``) and
        ``max_rhat_classic`` Gelman–Rubin split R-hat, both over mechanistic
        quantities; with one chain both are computed on the chain's two halves
        (so a trend shows), and the fit is not converged whatever they say.
        ``*_per_chain`` entries are lists with one value per chain;
        ``tree_depth_saturation`` is the fraction of transitions that reached
        the maximum tree depth; ``stuck_chains`` and ``duplicate_chains`` are
        plain-language lists; ``problems`` joins every finding with ``"; "``.

    Raises
    ------
    ValueError
        If ``idata`` has no ``posterior`` group.
    """
    posterior = _require_posterior(idata)
    num_chains = posterior.sizes["chain"]
    mechanistic = posterior[[n for n in posterior.data_vars if not _is_weights(n)]]
    weights = posterior[[n for n in posterior.data_vars if _is_weights(n)]]

    statistics = _rhat_and_ess(mechanistic)
    functions = _function_rhats(idata)
    stuck = _stuck_chains(posterior)
    duplicates = _duplicate_chains(posterior)
    transitions = _transition_statistics(idata)
    row = {
        "subject": str(posterior.attrs.get("subject", "")),
        "model": str(posterior.attrs.get("model_name", "")),
        "num_chains": int(num_chains),
        "num_draws": int(posterior.sizes["draw"]),
        "max_rhat": _extreme(statistics["rhat"], np.max),
        "max_rhat_classic": _extreme(statistics["rhat_classic"], np.max),
        "min_ess_bulk": _extreme(statistics["ess_bulk"], np.min),
        "min_ess_tail": _extreme(statistics["ess_tail"], np.min),
        "max_rhat_network_output": _extreme(functions["network_output"], np.max),
        "max_rhat_trajectories": _extreme(functions["trajectories"], np.max),
        "max_rhat_network_weights": _weights_rhat(weights),
        "network_weights": WEIGHTS_LABEL if weights.data_vars else "",
        **transitions,
        "stuck_chains": stuck,
        "duplicate_chains": duplicates,
        "wall_time_s": float(posterior.attrs.get("wall_time_s", np.nan)),
    }
    blocking = _blocking_problems(row, statistics, functions)
    row["converged"] = not blocking
    row["problems"] = "; ".join(blocking + _advisory_problems(row, statistics))
    return {name: row[name] for name in VERDICT_COLUMNS}


def fit_summary(idata: az.InferenceData) -> dict:
    """Convergence verdict and predictive accuracy of one fit.

    Returns
    -------
    dict
        The keys of ``SUMMARY_COLUMNS``: :func:`convergence_verdict` plus
        :func:`bayesude.comparison.loo_summary` (PSIS-LOO and WAIC with the
        sample-size dependent Pareto-k threshold). A log-likelihood that LOO
        cannot use (missing, non-finite) leaves those columns NaN and says why
        in ``problems``; it never raises.
    """
    row = convergence_verdict(idata)
    try:
        loo = loo_summary(idata)
    except ValueError as error:
        loo = {name: np.nan for name in LOO_COLUMNS}
        loo["problems"] = [f"LOO not computed: {error}"]
    problems = [p for p in [row.pop("problems")] if p] + loo.pop("problems")
    row.update(loo)
    row["problems"] = "; ".join(problems)
    return {name: row[name] for name in SUMMARY_COLUMNS}


def summarise_fits(idatas: list[az.InferenceData]) -> pd.DataFrame:
    """One row per subject and model: :func:`fit_summary` of every fit, in order."""
    rows = [fit_summary(idata) for idata in idatas]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summary_records(summary: pd.DataFrame) -> list[dict]:
    """The summary as JSON-ready records: NaN becomes None, lists stay lists."""
    records = []
    for row in summary.to_dict("records"):
        records.append({key: _json_value(value) for key, value in row.items()})
    return records


def summary_for_csv(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with list cells written as space-separated values."""
    table = summary.copy()
    for name in PER_CHAIN_COLUMNS + ["stuck_chains", "duplicate_chains"]:
        if name in table:
            separator = "; " if name in ("stuck_chains", "duplicate_chains") else " "
            table[name] = [
                separator.join(map(str, value)) if isinstance(value, list) else value
                for value in table[name]
            ]
    return table


def _json_value(value):
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _require_posterior(idata: az.InferenceData) -> xr.Dataset:
    if "posterior" not in idata.groups():
        raise ValueError(
            "convergence_verdict needs an InferenceData with a 'posterior' group; "
            f"the one given has groups {idata.groups()}."
        )
    return idata.posterior


def _is_weights(name) -> bool:
    return str(name).endswith(NETWORK_WEIGHTS_SUFFIX)


def _extreme(by_name: dict[str, float], reduce_fn) -> float:
    """Max or min over variables; NaN propagates so it can never pass."""
    if not by_name:
        return np.nan
    return float(reduce_fn(list(by_name.values())))


def _halves(dataset: xr.Dataset) -> xr.Dataset:
    """One chain as two: its first and second halves (odd last draw dropped)."""
    half = dataset.sizes["draw"] // 2
    first = dataset.isel(chain=0, draw=slice(0, half))
    second = dataset.isel(chain=0, draw=slice(half, 2 * half))
    second = second.assign_coords(draw=first["draw"].values)
    return xr.concat([first, second], dim="chain").assign_coords(chain=[0, 1])


def _per_variable(statistic: xr.Dataset, reduce_fn) -> dict[str, float]:
    return {
        str(name): float(reduce_fn(values.values))
        for name, values in statistic.data_vars.items()
    }


def _rhat_and_ess(posterior: xr.Dataset) -> dict[str, dict[str, float]]:
    """Per-variable worst R-hat (rank and classic) and ESS (bulk and tail)."""
    if not posterior.data_vars:
        return {"rhat": {}, "rhat_classic": {}, "ess_bulk": {}, "ess_tail": {}}
    one_chain = posterior.sizes["chain"] < MIN_NUM_CHAINS
    # ArviZ needs two chains; a single chain is judged on its halves so that a
    # trend still shows (split R-hat), and the verdict fails on chain count.
    rhat_input = _halves(posterior) if one_chain else posterior
    with warnings.catch_warnings():
        # Constant draws give NaN with a RuntimeWarning; NaN fails below.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        rhat = az.rhat(rhat_input, method="rank")
        rhat_classic = az.rhat(rhat_input, method="identity" if one_chain else "split")
        ess_bulk = az.ess(rhat_input, method="bulk")
        ess_tail = az.ess(rhat_input, method="tail")
    return {
        "rhat": _per_variable(rhat, np.max),
        "rhat_classic": _per_variable(rhat_classic, np.max),
        "ess_bulk": _per_variable(ess_bulk, np.min),
        "ess_tail": _per_variable(ess_tail, np.min),
    }


def _rhat_of(values: xr.DataArray) -> float:
    if values.sizes["chain"] < MIN_NUM_CHAINS:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(xr.Dataset({"f": values}), method="rank")["f"].values
    # A function constant over all draws (e.g. a clamped region) has NaN R-hat
    # and nothing to mix; only elements that vary are judged.
    varies = values.std(dim=list(SAMPLE_DIMS)).values > 0
    if not varies.any():
        return np.nan
    return float(np.max(rhat[varies]))


def _function_rhats(idata: az.InferenceData) -> dict[str, dict[str, float]]:
    """Worst R-hat of each network's output and of each predicted trajectory."""
    suffix = len(NETWORK_WEIGHTS_SUFFIX)
    # A network that cannot be evaluated cannot be judged: its R-hat stays NaN,
    # which fails the verdict and is named in the problems.
    networks = {
        str(name)[:-suffix]: np.nan
        for name in idata.posterior.data_vars
        if _is_weights(name)
    }
    if networks and idata.posterior.attrs.get("model_specification"):
        try:
            outputs = network_output_draws(idata)
        except ValueError:
            outputs = {}
        networks.update({name: _rhat_of(values) for name, values in outputs.items()})
    trajectories = {
        name: _rhat_of(values) for name, values in trajectory_draws(idata).items()
    }
    return {"network_output": networks, "trajectories": trajectories}


def _weights_rhat(weights: xr.Dataset) -> float:
    if not weights.data_vars or weights.sizes["chain"] < MIN_NUM_CHAINS:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(weights, method="rank")
    return _extreme(_per_variable(rhat, np.nanmax), np.max)


def _stuck_chains(posterior: xr.Dataset) -> list[str]:
    """``"chain 2: tau_m, V_rest"`` for every chain with a constant parameter."""
    if posterior.sizes["draw"] < 2:
        return []
    stuck = []
    for chain in range(posterior.sizes["chain"]):
        one = posterior.isel(chain=chain)
        constant = [
            str(name)
            for name, values in one.data_vars.items()
            if np.any(np.ptp(values.values.reshape(values.shape[0], -1), axis=0) == 0)
        ]
        if constant:
            stuck.append(f"chain {chain}: {', '.join(constant)}")
    return stuck


def _duplicate_chains(posterior: xr.Dataset) -> list[str]:
    """``"chains 0 and 1"`` for every pair of chains with identical draws."""
    num_chains = posterior.sizes["chain"]
    flat = [
        np.concatenate(
            [
                values.isel(chain=c).values.ravel()
                for values in posterior.data_vars.values()
            ]
        )
        for c in range(num_chains)
    ]
    return [
        f"chains {a} and {b}"
        for a, b in itertools.combinations(range(num_chains), 2)
        if np.array_equal(flat[a], flat[b], equal_nan=True)
    ]


def _per_chain_count(idata, group: str, name: str, num_chains: int) -> list[int]:
    if group not in idata.groups() or name not in idata[group]:
        return [0] * num_chains
    values = idata[group][name].values.astype(np.int64)
    return [int(v) for v in values.reshape(values.shape[0], -1).sum(axis=1)]


def _bfmi_per_chain(idata: az.InferenceData) -> list[float]:
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    if stats is None or "energy" not in stats or stats.sizes["draw"] < 2:
        return []
    return [float(value) for value in az.bfmi(stats["energy"].values)]


def _max_tree_depth(idata: az.InferenceData) -> float:
    settings = idata.posterior.attrs.get("inference_settings")
    if not settings:
        return np.nan
    return float(json.loads(settings).get("max_tree_depth", np.nan))


def _tree_depth_saturation(idata: az.InferenceData) -> float:
    """Fraction of transitions that reached the maximum tree depth; NaN if unknown.

    A tree of depth ``d`` takes ``2**d - 1`` leapfrog steps; the step count
    (``n_steps``) is used where stored, since ``tree_depth`` as recorded by
    ``bayesude.fit`` is ``floor(log2(n_steps))``, one less at saturation.
    """
    max_depth = _max_tree_depth(idata)
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    if stats is None or not np.isfinite(max_depth):
        return np.nan
    if "n_steps" in stats:
        return float(np.mean(stats["n_steps"].values >= 2**max_depth - 1))
    if "tree_depth" in stats:
        return float(np.mean(stats["tree_depth"].values >= max_depth))
    return np.nan


def _transition_statistics(idata: az.InferenceData) -> dict:
    num_chains = idata.posterior.sizes["chain"]
    divergences = _per_chain_count(idata, "sample_stats", "diverging", num_chains)
    failures = _per_chain_count(idata, "sample_stats", "solver_failure", num_chains)
    warmup = _per_chain_count(
        idata, "warmup_sample_stats", "solver_failure", num_chains
    )
    bfmi = _bfmi_per_chain(idata)
    return {
        "divergences": sum(divergences),
        "divergences_per_chain": divergences,
        "min_bfmi": min(bfmi) if bfmi else np.nan,
        "bfmi_per_chain": bfmi,
        "tree_depth_saturation": _tree_depth_saturation(idata),
        "solver_failures": sum(failures),
        "solver_failures_per_chain": failures,
        "warmup_solver_failures": sum(warmup),
        "warmup_solver_failures_per_chain": warmup,
    }


def _counted(count: int, noun: str) -> str:
    """``"1 proposal"``, ``"3 proposals"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _rhat_problems(
    rhat_by_name: dict[str, float],
    what: str,
    threshold: float,
    missing_reason: str = "constant or non-finite draws",
) -> list:
    """At most two sentences: quantities without R-hat, and those above threshold."""
    missing = [name for name, value in rhat_by_name.items() if not np.isfinite(value)]
    high = [
        f"{name} ({value:.3f})"
        for name, value in rhat_by_name.items()
        if np.isfinite(value) and value >= threshold
    ]
    problems = []
    if missing:
        problems.append(
            f"R-hat cannot be computed on {what}{', '.join(missing)} ({missing_reason})"
        )
    if high:
        problems.append(f"R-hat > {threshold} on {what}{', '.join(high)}")
    return problems


def _ess_problems(kind: str, ess_by_name: dict[str, float]) -> list[str]:
    # An ESS that cannot be computed counts as too low.
    low = [
        f"{name} ({value:.0f})" if np.isfinite(value) else f"{name} (unavailable)"
        for name, value in ess_by_name.items()
        if not value >= MIN_ESS
    ]
    return [f"{kind} ESS < {MIN_ESS} on {', '.join(low)}"] if low else []


def _blocking_problems(row: dict, statistics: dict, functions: dict) -> list[str]:
    problems = []
    if row["num_chains"] < MIN_NUM_CHAINS:
        problems.append(
            "only one chain: convergence cannot be judged (R-hat shown is from "
            "the chain's two halves; run at least 2 chains)"
        )
    problems += [
        f"stuck {entry} constant over the whole chain" for entry in row["stuck_chains"]
    ]
    problems += [
        f"{pair} are identical copies (check that each chain has its own seed)"
        for pair in row["duplicate_chains"]
    ]
    problems += _rhat_problems(statistics["rhat"], "", RHAT_THRESHOLD)
    problems += _rhat_problems(
        functions["network_output"],
        "the output of network ",
        RHAT_THRESHOLD,
        "not evaluable from the stored fit, or constant",
    )
    problems += _rhat_problems(
        functions["trajectories"],
        "the predicted trajectory of ",
        TRAJECTORY_RHAT_THRESHOLD,
    )
    problems += _ess_problems("bulk", statistics["ess_bulk"])
    if row["divergences"] > 0:
        per_chain = " ".join(map(str, row["divergences_per_chain"]))
        problems.append(
            f"{_counted(row['divergences'], 'divergent transition')} "
            f"(per chain: {per_chain})"
        )
    low_bfmi = [
        f"{value:.2f} in chain {chain}"
        for chain, value in enumerate(row["bfmi_per_chain"])
        if value < MIN_BFMI
    ]
    if low_bfmi:
        problems.append(f"E-BFMI below {MIN_BFMI}: {', '.join(low_bfmi)}")
    return problems


def _advisory_problems(row: dict, statistics: dict) -> list[str]:
    problems = _ess_problems("tail", statistics["ess_tail"])
    saturation = row["tree_depth_saturation"]
    if np.isfinite(saturation) and saturation > 0:
        problems.append(
            f"{saturation:.0%} of transitions hit the maximum tree depth "
            "(inefficient exploration; raise max_tree_depth)"
        )
    if row["solver_failures"] > 0:
        per_chain = " ".join(map(str, row["solver_failures_per_chain"]))
        problems.append(
            f"{_counted(row['solver_failures'], 'proposal')} rejected because the "
            f"ODE solve failed (per chain: {per_chain})"
        )
    return problems
