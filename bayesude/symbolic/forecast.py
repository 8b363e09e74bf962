r"""Leave-future-out: fit on the first part of a series, score the rest.

A model fitted to the observations up to a time :math:`t_c` is solved past
:math:`t_c` at each posterior draw, and every later observation :math:`y_i` is
scored by its log predictive density

.. math::

    \mathrm{lpd}_i = \log \frac{1}{D} \sum_{d=1}^{D} p(y_i \mid \theta_d),

summed into :math:`\mathrm{elpd}_{\mathrm{lfo}}` with a standard error
:math:`\sqrt{n}\,\mathrm{sd}(\mathrm{lpd}_i)`. This is extrapolation in time:
a model that learned the mechanism keeps predicting after the window, one
that memorised the window does not.

A neural term maps its inputs to ``[-1, 1]`` from the data's range; the
forecast must use the *training* range, so :func:`with_training_ranges` fixes
every network's input ranges before the training fit.
"""

from __future__ import annotations

import dataclasses

import arviz as az
import jax
import numpy as np
import scipy.special
import scipy.stats
import xarray as xr
from numpyro.infer import Predictive

from bayesude.core.specification import ModelSpecification
from bayesude.inference.model import SOLVER_SUCCESS_SITE, build_model
from bayesude.inference.prepared_data import prepare_data
from bayesude.results import specification_of


def split_time(data: xr.Dataset, fraction: float) -> float:
    """The last training time when the first ``fraction`` of sample times train.

    Raises
    ------
    ValueError
        ``fraction`` leaves fewer than two times on either side.
    """
    times = np.asarray(data["time"].values, dtype=float)
    count = int(round(fraction * times.size))
    if not 2 <= count <= times.size - 2:
        raise ValueError(
            f"forecast_fraction {fraction} leaves {count} of {times.size} times for "
            f"training; choose a fraction that keeps at least two times on each side."
        )
    return float(times[count - 1])


def training_data(data: xr.Dataset, until: float) -> xr.Dataset:
    """The samples at times up to and including ``until``."""
    return data.sel(time=data["time"].values <= until)


def with_training_ranges(
    spec: ModelSpecification, train: xr.Dataset
) -> ModelSpecification:
    """``spec`` with each network's input ranges fixed to the training data's."""
    if not spec.neural_terms:
        return spec
    if "subject" in train.dims:
        train = train.isel(subject=0, drop=True)
    ranges = prepare_data(spec, train, "training").variable_ranges()
    terms = []
    for term in spec.neural_terms:
        given = dict(term.input_ranges)
        fixed = {
            name: given.get(name, ranges.get(name))
            for name in spec.network_inputs(term)
        }
        fixed = {name: value for name, value in fixed.items() if value is not None}
        terms.append(dataclasses.replace(term, input_ranges=tuple(fixed.items())))
    return dataclasses.replace(spec, neural_terms=tuple(terms))


def forecast_log_density(
    idata: az.InferenceData,
    data: xr.Dataset,
    after: float,
    num_draws: int = 200,
) -> dict[str, float]:
    """Log predictive density of the observations after ``after`` (LFO).

    Parameters
    ----------
    idata
        A fit to the observations up to ``after`` (its specification must fix
        the networks' input ranges; see :func:`with_training_ranges`).
    data
        The whole series of the same subject, ``(sweep, time)``.
    after
        Last training time; later observations are scored.
    num_draws
        Posterior draws used, spread evenly over all chains.

    Returns
    -------
    dict
        ``elpd_lfo``, ``elpd_lfo_se``, ``num_scored`` (observations after
        ``after``) and ``failed_draws`` (draws whose solve failed past the
        window; they give those observations zero density).
    """
    spec = specification_of(idata)
    if "subject" in data.dims:
        data = data.isel(subject=0, drop=True)
    prepared = prepare_data(spec, data, "forecast")
    built = build_model(spec, prepared)
    samples = _thinned_draws(idata, built.latent_sizes, num_draws)

    sites = [f"{name}_trajectory" for name in prepared.observed] + [SOLVER_SUCCESS_SITE]
    predictive = Predictive(built.model, posterior_samples=samples, return_sites=sites)
    outputs = predictive(jax.random.key(0), observe=False, record_trajectories=True)
    solved = np.asarray(outputs[SOLVER_SUCCESS_SITE]).astype(bool)

    pointwise = []
    for name, variable in prepared.observed.items():
        later = prepared.times[variable.time_index] > after
        trajectory = np.asarray(outputs[f"{name}_trajectory"])
        mean = trajectory[:, variable.sweep_index[later], variable.time_index[later]]
        sigma = samples[f"sigma_{name}"][:, None]
        if spec.observation == "student_t":
            noise = scipy.stats.t(spec.student_t_df, loc=mean, scale=sigma)
        else:
            noise = scipy.stats.norm(loc=mean, scale=sigma)
        log_density = np.where(
            solved[:, None], noise.logpdf(variable.values[later]), -np.inf
        )
        pointwise.append(
            scipy.special.logsumexp(log_density, axis=0) - np.log(len(solved))
        )
    lpd = np.concatenate(pointwise)
    return {
        "elpd_lfo": float(lpd.sum()),
        "elpd_lfo_se": float(np.sqrt(lpd.size) * np.std(lpd)),
        "num_scored": int(lpd.size),
        "failed_draws": int((~solved).sum()),
    }


def _thinned_draws(idata, latent_sizes, num_draws) -> dict[str, np.ndarray]:
    posterior = idata.posterior
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    chosen = np.unique(np.linspace(0, total - 1, min(num_draws, total)).astype(int))
    samples = {}
    for name in latent_sizes:
        values = np.asarray(posterior[name].values)
        samples[name] = values.reshape((total,) + values.shape[2:])[chosen]
    return samples
