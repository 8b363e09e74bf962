"""Observation models: validation, serialisation, and recovery from synthetic data.

The latent is logistic growth, y(t) = K / (1 + (K/y0 - 1) exp(-r t)), solved in
closed form here; observations are drawn from each observation model around
it, and the fit must recover the growth rate and the observation parameters.
"""

import arviz as az
import numpy as np
import pytest
import scipy.stats
import xarray as xr

import bayesude
from bayesude.core.observations import ObservationModel, observation_model_from_dict
from bayesude.core.specification import specification_from_dict

GROWTH_RATE = 0.8
CAPACITY = 10.0
START = 0.5
GAIN, OFFSET = 0.4, -1.0
CONCENTRATION = 3.0
RATE_NOISE = 0.3


def _latent(times):
    return CAPACITY / (1 + (CAPACITY / START - 1) * np.exp(-GROWTH_RATE * times))


def _softplus(x):
    return np.log1p(np.exp(x))


def _dataset(values, units):
    times = np.linspace(0.0, 15.0, values.shape[-1])
    return xr.Dataset(
        {"signal": (("sweep", "time"), values, {"units": units, "role": "observed"})},
        coords={"sweep": np.arange(values.shape[0]), "time": times},
    )


def _synthetic(family, seed=3, num_sweeps=2, num_times=100):
    rng = np.random.default_rng(seed)
    times = np.linspace(0.0, 15.0, num_times)
    mean = np.broadcast_to(
        _softplus(GAIN * _latent(times) + OFFSET), (num_sweeps, num_times)
    )
    if family == "poisson":
        values = rng.poisson(mean)
    elif family == "negative_binomial":
        p = CONCENTRATION / (CONCENTRATION + mean)
        values = rng.negative_binomial(CONCENTRATION, p)
    else:
        values = mean + RATE_NOISE * rng.standard_normal(mean.shape)
    return _dataset(values.astype(float), "count" if family != "rate" else "Hz")


def _specification(family):
    return bayesude.ModelSpecification(
        mechanistic="logistic_growth",
        observed={"signal": "y"},
        fixed={"K": CAPACITY},
        initial_state={"y": START},
        observations={"signal": ObservationModel(family=family)},
    )


def _fit(family, method):
    settings = {"num_chains": 2, "num_warmup": 150, "num_samples": 200}
    if method == "svi":
        settings = {"num_samples": 400, "svi_steps": 1500}
    return bayesude.fit(
        _specification(family),
        _synthetic(family),
        method=method,
        seed=2,
        init="svi",
        svi_learning_rate=0.02,
        progress_bar=False,
        **{"svi_steps": 300, **settings},
    )


@pytest.fixture(scope="module", params=["poisson", "negative_binomial", "rate"])
def recovered(request):
    """A fast variational fit per family (NUTS runs in the slow tier)."""
    return request.param, _fit(request.param, "svi")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["poisson", "negative_binomial", "rate"])
def test_nuts_recovers_growth_rate_and_link_parameters(family):
    idata = _fit(family, "nuts")
    _assert_recovered(family, idata)
    assert float(az.rhat(idata.posterior)["r"]) < 1.05


def test_growth_rate_and_link_parameters_are_recovered(recovered):
    _assert_recovered(*recovered)


def _assert_recovered(family, idata):
    posterior = idata.posterior
    truths = {"r": GROWTH_RATE, "gain_signal": GAIN, "offset_signal": OFFSET}
    if family == "negative_binomial":
        truths["concentration_signal"] = CONCENTRATION
    if family == "rate":
        truths["sigma_signal"] = RATE_NOISE
    for name, truth in truths.items():
        draws = posterior[name].values.ravel()
        # Mean-field SVI understates spread; allow 10% of the truth besides 4 sd.
        error = abs(draws.mean() - truth)
        assert error <= max(4 * draws.std(), 0.1 * abs(truth)), (family, name)


def test_pointwise_log_likelihood_matches_scipy_at_one_draw(recovered):
    family, idata = recovered
    draw = idata.posterior.isel(chain=0, draw=0)
    mean = idata.predictions["signal"].isel(chain=0).values
    # predictions hold the expected observation of thinned draws; recompute the
    # density of draw 0 from its own parameters instead.
    times = idata.observed_data["time"].values
    latent = _logistic(times, float(draw["r"]))
    expected = _softplus(
        float(draw["gain_signal"]) * latent + float(draw["offset_signal"])
    )
    observed = idata.observed_data["signal"].values
    if family == "poisson":
        reference = scipy.stats.poisson(expected).logpmf(observed)
    elif family == "negative_binomial":
        phi = float(draw["concentration_signal"])
        reference = scipy.stats.nbinom(phi, phi / (phi + expected)).logpmf(observed)
    else:
        sigma = float(draw["sigma_signal"])
        reference = scipy.stats.norm(expected, sigma).logpdf(observed)
    stored = idata.log_likelihood["signal"].isel(chain=0, draw=0).values
    # The fit's latent comes from the ODE solver (rtol 1e-6), the reference
    # from the closed form.
    np.testing.assert_allclose(stored, reference, rtol=1e-4, atol=1e-4)
    assert mean.shape[-1] == len(np.unique(times))


def _logistic(times, rate):
    return CAPACITY / (1 + (CAPACITY / START - 1) * np.exp(-rate * times))


def test_loo_works_and_counts_are_predicted_as_counts(recovered):
    family, idata = recovered
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    predictive = idata.posterior_predictive["signal"].values
    if family != "rate":
        assert np.all(predictive >= 0) and np.all(predictive == np.round(predictive))


def test_posterior_predictive_covers_observed_counts(recovered):
    family, idata = recovered
    predictive = idata.posterior_predictive["signal"].values.reshape(
        -1, idata.observed_data["signal"].size
    )
    low, high = np.quantile(predictive, [0.05, 0.95], axis=0)
    observed = idata.observed_data["signal"].values
    coverage = np.mean((observed >= low) & (observed <= high))
    assert 0.8 <= coverage <= 1.0


def test_observation_model_round_trips_through_plain_data():
    spec = _specification("negative_binomial")
    again = specification_from_dict(spec.as_dict(), "test")
    assert again.observation_model("signal") == spec.observation_model("signal")
    assert again.to_json() == spec.to_json()


def test_family_name_alone_is_accepted():
    model = observation_model_from_dict("poisson", "models.x.observations.spikes")
    assert model == ObservationModel(family="poisson")


@pytest.mark.parametrize(
    ("description", "message"),
    [
        (
            {"family": "binomial"},
            "models.x.observations.spikes: Unknown observation family 'binomial'; "
            "use one of gaussian, student_t, lognormal, poisson, negative_binomial, "
            "rate.",
        ),
        (
            {"family": "poisson", "link": "identity"},
            "models.x.observations.spikes: A poisson observation needs a positive "
            "expected count; use link 'softplus' or 'exp' instead of 'identity'.",
        ),
        (
            {"family": "poisson", "bin": 5},
            "models.x.observations.spikes: unknown field(s) ['bin']; an observation "
            "model takes ['concentration_prior', 'family', 'gain_prior', 'link', "
            "'noise_prior_scale', 'offset_prior', 'student_t_df'].",
        ),
        (
            {"family": "poisson", "gain_prior": {"distribution": "Banana"}},
            "models.x.observations.spikes.gain_prior: Unknown prior distribution "
            "'Banana'",
        ),
    ],
)
def test_bad_observation_model_is_reported_with_its_field(description, message):
    with pytest.raises(ValueError) as error:
        observation_model_from_dict(description, "models.x.observations.spikes")
    assert str(error.value).startswith(message)


def test_observation_for_a_variable_that_is_not_observed_is_rejected():
    with pytest.raises(ValueError, match="observations: 'spikes' is not an observed"):
        bayesude.ModelSpecification(
            mechanistic="logistic_growth",
            observed={"signal": "y"},
            observations={"spikes": ObservationModel(family="poisson")},
        )


def test_spike_counts_do_not_set_the_latent_initial_state():
    """A count says nothing direct about the latent's start: no y_0 site."""
    spec = bayesude.ModelSpecification(
        mechanistic="wilson_cowan_adaptation",
        observed={"signal": "E"},
        observations={"signal": ObservationModel(family="poisson")},
    )
    from bayesude.inference.model import build_model
    from bayesude.inference.prepared_data import prepare_data

    data = _synthetic("poisson", num_times=20)
    data["time"].attrs["units"] = "ms"
    built = build_model(spec, prepare_data(spec, data, "synthetic"))
    assert "E_0" not in built.latent_sizes
    assert {"gain_signal", "offset_signal"} <= set(built.latent_sizes)
