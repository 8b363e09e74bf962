"""Hierarchical fits: recovery of the population, ragged subjects, per-subject views."""

import numpy as np
import pytest
import scipy.stats
from decay_cells import decay_cells, decay_specification
from numpyro.infer.util import log_likelihood

import bayesude
from bayesude.diagnostics import summarise_fits
from bayesude.inference.hierarchical import (
    build_hierarchical_model,
    fit_hierarchical,
    resolve_pooling,
    stack_subjects,
    subject_view,
)

POPULATION_MEAN = float(np.log(20.0))
POPULATION_SPREAD = 0.05
OFFSETS = np.array([-1.2, -0.6, -0.3, 0.0, 0.2, 0.5, 0.9, 1.4])
OBSERVATION_TIMES_MS = np.array([5.0, 10.0, 20.0, 40.0, 60.0])
NOISE = 0.05


def _pooled_decay_specification():
    return decay_specification(
        tau_m=bayesude.prior("LogNormal", loc=POPULATION_MEAN, scale=1.0)
    )


@pytest.fixture(scope="module")
def few_observations_per_cell():
    """Eight cells, five noisy observations each: the funnel-prone case."""
    taus = np.exp(POPULATION_MEAN + POPULATION_SPREAD * OFFSETS)
    return decay_cells(taus, OBSERVATION_TIMES_MS, NOISE, seed=0)


@pytest.fixture(scope="module")
def population_fit(few_observations_per_cell):
    return fit_hierarchical(
        _pooled_decay_specification(),
        few_observations_per_cell,
        spread_prior_scale={"tau_m": 0.5},
        shared_noise=True,
        t0=0.0,
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        seed=0,
        progress_bar=False,
        model_name="decay",
    )


def test_non_centred_fit_recovers_population_mean_and_spread_without_divergences(
    population_fit,
):
    posterior = population_fit.posterior
    divergent = population_fit.sample_stats["diverging"].values
    assert divergent.mean() < 0.01

    mean = posterior["tau_m_population_mean"].values.ravel()
    assert abs(mean.mean() - POPULATION_MEAN) < 3 * mean.std()
    spread = posterior["tau_m_population_spread"].values.ravel()
    low, high = np.quantile(spread, [0.05, 0.95])
    assert low < POPULATION_SPREAD < high
    assert posterior["tau_m"].dims == ("chain", "draw", "subject")


def test_log_likelihood_per_subject_sums_that_subjects_observations(population_fit):
    pointwise = population_fit.log_likelihood["voltage"]
    per_subject = pointwise.groupby("subject").sum()
    assert per_subject.sizes["subject"] == 8
    cell = pointwise.isel(voltage_observation=pointwise["subject"] == "cell_03")
    np.testing.assert_allclose(
        per_subject.sel(subject="cell_03"), cell.sum("voltage_observation")
    )
    assert cell.sizes["voltage_observation"] == OBSERVATION_TIMES_MS.size


def test_subject_view_is_laid_out_like_an_independent_fit(population_fit):
    view = subject_view(population_fit, "cell_05")
    assert view.posterior.attrs["subject"] == "cell_05"
    assert view.posterior.attrs["model_name"] == "decay_hierarchical"
    assert view.posterior["tau_m"].dims == ("chain", "draw")
    assert "tau_m_population_spread" in view.posterior
    assert view.observed_data["voltage"].sizes["voltage_observation"] == 5
    np.testing.assert_allclose(view.observed_data["time"], OBSERVATION_TIMES_MS)
    assert view.predictions["voltage"].dims == ("chain", "draw", "sweep", "time")

    row = summarise_fits([view]).iloc[0]
    assert row["subject"] == "cell_05" and row["divergences"] == 0


def test_ragged_subjects_enter_the_likelihood_without_padding():
    times = [np.array([0.0, 10.0, 20.0, 40.0, 60.0]), np.array([0.0, 15.0, 30.0])]
    data = decay_cells([18.0, 25.0], times, NOISE, seed=4)
    spec = _pooled_decay_specification()
    stacked = stack_subjects(spec, data)
    pooling = resolve_pooling(spec, shared_noise=False)
    model, _ = build_hierarchical_model(spec, stacked, pooling)
    taus = np.array([17.0, 26.0])
    sigmas = np.array([0.04, 0.06])
    params = {
        "tau_m_population_mean": np.array(3.0),
        "tau_m_population_spread": np.array(0.2),
        "tau_m_offset": (np.log(taus) - 3.0) / 0.2,
        "sigma_voltage": sigmas,
    }
    pointwise = log_likelihood(model, params, stacked.arrays, batch_ndims=0)["voltage"]

    assert pointwise.shape == (8,)
    expected = np.concatenate(
        [
            scipy.stats.norm.logpdf(
                data["voltage"].sel(subject=f"cell_0{i}").dropna("time").values[0],
                np.exp(-t / tau),
                sigma,
            )
            for i, (t, tau, sigma) in enumerate(zip(times, taus, sigmas, strict=True))
        ]
    )
    np.testing.assert_allclose(pointwise, expected, rtol=1e-5)


def test_pooling_a_parameter_with_an_unsupported_prior_names_the_alternatives():
    spec = decay_specification(tau_m=bayesude.prior("HalfNormal", scale=20.0))
    with pytest.raises(NotImplementedError, match="Normal and LogNormal priors"):
        resolve_pooling(spec)
    with pytest.raises(ValueError, match="'E_L' is not a free parameter"):
        resolve_pooling(decay_specification(), pooled=["E_L"])
