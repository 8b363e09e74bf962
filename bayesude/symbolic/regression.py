r"""Sparse regression of a learned term onto a candidate library, draw by draw.

For every posterior draw :math:`d` of a neural term's weights, the network's
output :math:`g_d(z_i)` at points :math:`z_i` the data visit is regressed onto
the library :math:`\Theta_{ik} = \theta_k(z_i)` with sequentially thresholded
least squares (pysindy's ``STLSQ``):

.. math::

    g_d(z_i) \approx \sum_k \xi_{dk}\, \theta_k(z_i).

Columns and target are first scaled to unit root mean square over the points,
so the threshold is a *relative* size: a candidate whose share of the term is
below ``threshold`` (e.g. 0.05 of the term's typical size) is dropped. Across
draws, the fraction of draws that keep candidate :math:`k` is its inclusion
probability, and the draws of :math:`\xi_{dk}` give its coefficient interval.
The median probability model keeps the candidates included in at least half
of the draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import arviz as az
import jax
import numpy as np
import pandas as pd
import pysindy
import sympy
import xarray as xr

from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data
from bayesude.results import specification_of
from bayesude.symbolic.library import CandidateLibrary

#: Inclusion probability at which a candidate enters the median probability model.
SELECTION_PROBABILITY = 0.5

#: Ridge penalty of STLSQ on the scaled problem, relative to the number of points.
_RIDGE_PER_POINT = 1e-6


@dataclasses.dataclass(frozen=True)
class LearnedTerm:
    """Posterior draws of a neural term's output where the data are.

    Attributes
    ----------
    term
        The replaced term (``"cubic_nonlinearity"``).
    network
        The neural term's name.
    points
        ``{argument: (num_points,)}``: where the network is evaluated.
    outputs
        Network output per draw, shape ``(num_draws, num_points)``, in the
        units of the replaced term.
    """

    term: str
    network: str
    points: dict[str, np.ndarray]
    outputs: np.ndarray


@dataclasses.dataclass(frozen=True)
class TermDiscovery:
    """Result of the sparse regression of one learned term, over posterior draws.

    Attributes
    ----------
    learned
        The learned term that was regressed.
    library
        The candidate library.
    threshold
        Relative threshold of STLSQ.
    coefficients
        Coefficient of each candidate per draw, ``(num_draws, num_candidates)``;
        zero where the draw dropped the candidate.
    explained
        Fraction of each draw's network output explained by its sparse
        expression (R²), ``(num_draws,)``.
    """

    learned: LearnedTerm
    library: CandidateLibrary
    threshold: float
    coefficients: np.ndarray
    explained: np.ndarray

    @property
    def term(self) -> str:
        return self.learned.term

    @property
    def inclusion_probability(self) -> np.ndarray:
        """Fraction of draws keeping each candidate, ``(num_candidates,)``."""
        return np.mean(self.coefficients != 0.0, axis=0)

    @property
    def selected(self) -> tuple[str, ...]:
        """Labels of the median probability model, in library order."""
        keep = self.inclusion_probability >= SELECTION_PROBABILITY
        return tuple(label for label, k in zip(self.library.labels, keep) if k)

    def coefficient_estimates(self) -> dict[str, float]:
        """Median coefficient of each selected candidate, over the draws keeping it."""
        estimates = {}
        for index, label in enumerate(self.library.labels):
            if label in self.selected:
                kept = self.coefficients[:, index]
                estimates[label] = float(np.median(kept[kept != 0.0]))
        return estimates

    def table(self, interval: float = 0.9) -> pd.DataFrame:
        """One row per candidate: inclusion probability and coefficient interval.

        The interval is the central ``interval`` range of the coefficient over
        all draws (zeros included), so a candidate rarely kept has an interval
        around zero.
        """
        tail = (1.0 - interval) / 2.0
        low, median, high = np.quantile(
            self.coefficients, [tail, 0.5, 1.0 - tail], axis=0
        )
        return pd.DataFrame(
            {
                "term": self.term,
                "candidate": list(self.library.labels),
                "expression": [sympy.sstr(e) for e in self.library.expressions],
                "inclusion_probability": self.inclusion_probability,
                "coefficient_median": median,
                "coefficient_low": low,
                "coefficient_high": high,
                "selected": [k in self.selected for k in self.library.labels],
            }
        )

    def expression(self, coefficient_prefix: str | None = None) -> sympy.Expr:
        """The median probability model with symbolic coefficients.

        Coefficients are named ``<prefix>_<label>`` (prefix: the term's name),
        e.g. ``cubic_nonlinearity_v3``.
        """
        prefix = self.term if coefficient_prefix is None else coefficient_prefix
        chosen = dict(self.library.candidates)
        return sympy.Add(
            *(
                sympy.Symbol(f"{prefix}_{label}") * chosen[label]
                for label in self.selected
            )
        )


def learned_term(
    idata: az.InferenceData,
    data: xr.Dataset,
    term: str,
    *,
    num_draws: int = 400,
    num_points: int = 200,
) -> LearnedTerm:
    """Evaluate the network replacing ``term`` at the points the data visit.

    Parameters
    ----------
    idata
        A fit whose specification replaces ``term`` by a neural term.
    data
        The subject's data the fit was made on, dimensions ``(sweep, time)``.
    term
        Name of the replaced term (``"cubic_nonlinearity"``).
    num_draws
        Posterior draws used, spread evenly over all chains.
    num_points
        Observation times used, spread evenly over the observations.

    Raises
    ------
    ValueError
        No neural term of the fit replaces ``term``.
    NotImplementedError
        The term reads a state that is not observed: the region it visits is
        not known from the data.
    """
    spec = specification_of(idata)
    neural = spec.replaced_terms.get(term)
    if neural is None:
        raise ValueError(
            f"The fit's model replaces {sorted(spec.replaced_terms) or 'no term'} "
            f"by a network, not {term!r}; discover a replaced term."
        )
    if "subject" in data.dims:
        data = data.isel(subject=0, drop=True)
    prepared = prepare_data(spec, data, "subject")
    network = build_model(spec, prepared).networks[neural.name]
    points = _visited_points(spec, prepared, network.inputs, num_points)

    weights = idata.posterior[f"{neural.name}_weights"].values
    weights = weights.reshape(-1, weights.shape[-1])
    weights = weights[_evenly(weights.shape[0], num_draws)]
    stacked = np.stack([points[name] for name in network.inputs], axis=1)
    evaluate = jax.jit(
        jax.vmap(
            jax.vmap(lambda w, z: network(w, *z)[0], in_axes=(None, 0)),
            in_axes=(0, None),
        )
    )
    outputs = np.asarray(evaluate(weights, stacked))
    arguments = spec.model.replaceable_term(term).arguments
    named = dict(zip(network.inputs, (points[n] for n in network.inputs)))
    return LearnedTerm(
        term=term,
        network=neural.name,
        points={a: named[n] for a, n in zip(arguments, network.inputs)},
        outputs=outputs,
    )


def _visited_points(
    spec: ModelSpecification, prepared, names: Sequence[str], num_points: int
) -> dict[str, np.ndarray]:
    """Values of ``names`` at observation times where all of them are known."""
    by_state = {v.state: v for v in prepared.observed.values()}
    tables = []
    for name in names:
        if name in by_state:
            variable = by_state[name]
            index = pd.MultiIndex.from_arrays(
                [variable.sweep_index, variable.time_index]
            )
            tables.append(pd.Series(variable.values, index=index, name=name))
        elif name not in prepared.inputs:
            raise NotImplementedError(
                f"The network reads {name!r}, which is neither observed nor an "
                f"input, so the region its values visit is unknown; discovery "
                f"needs every argument of the term observed."
            )
    if not tables:
        raise NotImplementedError(
            "Discovery needs at least one observed argument of the term."
        )
    joined = pd.concat(tables, axis=1, join="inner").sort_index()
    chosen = joined.iloc[_evenly(len(joined), num_points)]
    sweeps = chosen.index.get_level_values(0).to_numpy()
    times = chosen.index.get_level_values(1).to_numpy()
    points = {name: chosen[name].to_numpy() for name in joined.columns}
    for name in names:
        if name in prepared.inputs:
            points[name] = prepared.inputs[name].values[sweeps, times]
    return points


def _evenly(total: int, wanted: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, min(wanted, total)).astype(int))


def sparse_regression(
    outputs: np.ndarray, features: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """STLSQ of every row of ``outputs`` onto ``features``.

    Parameters
    ----------
    outputs
        Targets, ``(num_draws, num_points)``.
    features
        Library evaluated at the points, ``(num_points, num_candidates)``.
    threshold
        Relative threshold: candidates whose coefficient on the unit-RMS
        scale falls below it are dropped.

    Returns
    -------
    coefficients
        ``(num_draws, num_candidates)``, in the units of the features.
    explained
        R² of each draw's sparse fit, ``(num_draws,)``.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}.")
    feature_scales = np.sqrt(np.mean(features**2, axis=0))
    if np.any(feature_scales == 0):
        raise ValueError(
            "A candidate is zero at every point the data visit; remove it from "
            "the library."
        )
    target_scale = float(np.sqrt(np.mean(outputs**2))) or 1.0
    optimiser = pysindy.STLSQ(
        threshold=threshold,
        alpha=_RIDGE_PER_POINT * features.shape[0],
        unbias=True,
    )
    optimiser.fit(features / feature_scales, (outputs / target_scale).T)
    coefficients = np.asarray(optimiser.coef_) * target_scale / feature_scales
    residual = outputs - coefficients @ features.T
    centred = outputs - outputs.mean(axis=1, keepdims=True)
    explained = 1.0 - np.sum(residual**2, axis=1) / np.maximum(
        np.sum(centred**2, axis=1), np.finfo(float).tiny
    )
    return coefficients, explained


def discover_term(
    learned: LearnedTerm, library: CandidateLibrary, threshold: float = 0.05
) -> TermDiscovery:
    """Sparse regression of every draw of a learned term onto ``library``.

    Parameters
    ----------
    learned
        From :func:`learned_term`, or any draws of a function at points.
    library
        Candidates in the term's arguments.
    threshold
        Relative threshold (see the module docstring).
    """
    missing = sorted(set(library.arguments) - set(learned.points))
    if missing:
        raise ValueError(
            f"Library {library.name!r} uses {missing}, but the learned term "
            f"{learned.term!r} is a function of {sorted(learned.points)}."
        )
    features = library.evaluate(learned.points)
    coefficients, explained = sparse_regression(learned.outputs, features, threshold)
    return TermDiscovery(learned, library, float(threshold), coefficients, explained)


def sensitivity_table(
    learned: LearnedTerm,
    libraries: Sequence[CandidateLibrary],
    thresholds: Sequence[float],
) -> pd.DataFrame:
    """How the median probability model changes with the library and threshold.

    Returns
    -------
    pandas.DataFrame
        One row per library and threshold: the selected candidates, the
        lowest inclusion probability among them, the highest among the rest,
        and the median R² of the sparse fit.
    """
    rows = []
    for library in libraries:
        for threshold in thresholds:
            discovery = discover_term(learned, library, threshold)
            probability = discovery.inclusion_probability
            chosen = np.isin(library.labels, discovery.selected)
            rows.append(
                {
                    "term": learned.term,
                    "library": library.name,
                    "threshold": threshold,
                    "selected": " + ".join(discovery.selected) or "(none)",
                    "min_selected_probability": _extreme(probability[chosen], min),
                    "max_rejected_probability": _extreme(probability[~chosen], max),
                    "median_r2": float(np.median(discovery.explained)),
                }
            )
    return pd.DataFrame(rows)


def _extreme(values: np.ndarray, reduce_fn) -> float:
    return float(reduce_fn(values)) if values.size else float("nan")


def discovery_priors(
    discovery: TermDiscovery, coefficient_prefix: str | None = None
) -> dict[str, dict[str, float]]:
    """Normal priors for the discovered coefficients, centred on their estimates.

    The scale is twice the coefficient's spread over the draws keeping it, and
    at least a quarter of its size, so the refit can move the coefficient well
    beyond the regression's estimate while staying near the discovered form.
    """
    prefix = discovery.term if coefficient_prefix is None else coefficient_prefix
    priors = {}
    for index, label in enumerate(discovery.library.labels):
        if label not in discovery.selected:
            continue
        kept = discovery.coefficients[:, index]
        kept = kept[kept != 0.0]
        centre = float(np.median(kept))
        scale = max(2.0 * float(np.std(kept)), 0.25 * abs(centre), 1e-6)
        priors[f"{prefix}_{label}"] = {
            "distribution": "Normal",
            "loc": centre,
            "scale": scale,
        }
    return priors


def discovered_specification(
    spec: ModelSpecification, discoveries: Mapping[str, TermDiscovery]
) -> ModelSpecification:
    """The UDE's specification with its networks replaced by discovered expressions.

    Parameters
    ----------
    spec
        The UDE's specification; each discovered term's network leaves it.
    discoveries
        ``{term: discovery}``; the expression is each discovery's median
        probability model, with coefficient priors from :func:`discovery_priors`.

    Raises
    ------
    ValueError
        A discovery selected no candidate: there is no expression to refit.
    """
    from bayesude.core.specification import specification_from_dict
    from bayesude.models.discovered import format_discovered_name

    empty = [term for term, d in discoveries.items() if not d.selected]
    if empty:
        raise ValueError(
            f"The sparse regression of {empty} kept no candidate at this threshold; "
            f"lower the threshold or widen the library."
        )
    description = spec.as_dict()
    description["mechanistic"] = format_discovered_name(
        spec.mechanistic, {t: d.expression() for t, d in discoveries.items()}
    )
    description["neural_terms"] = [
        t for t in description["neural_terms"] if t["replaces"] not in discoveries
    ]
    for discovery in discoveries.values():
        description["priors"].update(discovery_priors(discovery))
    return specification_from_dict(description, "discovered specification")
