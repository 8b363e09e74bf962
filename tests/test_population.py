"""Population workflow: loading pooled counts, bursts, spectra, leave-future-out."""

import pathlib

import arviz as az
import numpy as np
import pytest
import scipy.special
import scipy.stats
import xarray as xr

import bayesude
from bayesude.core.observations import ObservationModel
from bayesude.population import (
    burst_statistics,
    leave_future_out,
    load_population_counts,
    power_spectrum,
    predictive_statistics,
)

DATA = pathlib.Path(__file__).parents[1] / "data" / "population"
WORKFLOWS = pathlib.Path(__file__).parents[1] / "workflows"


def _square_wave(dt_s=0.01, period_s=2.0, burst_s=0.5, total_s=20.0):
    times = np.arange(0.0, total_s, dt_s)
    return np.where((times % period_s) < burst_s, 10.0, 0.5)


def test_burst_statistics_of_a_square_wave():
    stats = burst_statistics(_square_wave(), dt_s=0.01, threshold=2.0)
    assert stats.burst_rate_hz == pytest.approx(0.5)
    assert stats.mean_burst_s == pytest.approx(0.5)
    assert stats.mean_silence_s == pytest.approx(1.5)
    assert stats.fraction_bursting == pytest.approx(0.25)


def test_burst_statistics_per_row_and_without_bursts():
    rows = np.stack([_square_wave(), np.zeros(2000)])
    stats = burst_statistics(rows, dt_s=0.01, threshold=2.0)
    np.testing.assert_allclose(stats.burst_rate_hz, [0.5, 0.0])
    assert np.isnan(stats.mean_burst_s[1]) and stats.fraction_bursting[1] == 0.0


def test_power_spectrum_peaks_at_the_burst_frequency():
    frequencies, density = power_spectrum(_square_wave(), dt_s=0.01, segment_s=10.0)
    assert frequencies[np.argmax(density)] == pytest.approx(0.5)


def test_pooled_counts_sum_all_units_in_wider_bins(tmp_path):
    counts = np.arange(2 * 20, dtype=np.uint8).reshape(2, 20) % 3
    path = tmp_path / "population.nc"
    xr.Dataset(
        {"spike_count": (("unit", "time"), counts)},
        coords={"time": 0.005 + 0.01 * np.arange(20)},
        attrs={"bin_width_s": 0.01, "source": "s", "license": "l", "origin": "o"},
    ).to_netcdf(path)

    data = load_population_counts(path, window_s=(0.0, 0.2), bin_s=0.05)

    expected = counts.sum(0).reshape(4, 5).sum(1)
    np.testing.assert_array_equal(data["population_count"].values[0], expected)
    np.testing.assert_allclose(data["time"].values, [0.025, 0.075, 0.125, 0.175])
    np.testing.assert_allclose(data["population_rate"].values[0], expected / (0.05 * 2))


def test_bin_width_that_is_not_a_multiple_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="must be a whole multiple"):
        load_population_counts(
            DATA / "rodent_hippocampus_population_rate_10ms.nc", bin_s=0.015
        )


def test_shipped_population_file_has_documented_mean_rate():
    """data/MANIFEST.md: 2.2 Hz per unit on average over 1000 s."""
    data = load_population_counts(
        DATA / "rodent_hippocampus_population_rate_10ms.nc", bin_s=0.05
    )
    assert data.sizes["time"] == 20000
    assert float(data["population_rate"].mean()) == pytest.approx(2.2, abs=0.05)


# A toy population workflow: logistic growth seen through Poisson counts,
# fitted on the first two thirds and scored on the last third.
def _toy_counts():
    rng = np.random.default_rng(0)
    times = np.linspace(0.0, 15.0, 90)
    latent = 10.0 / (1 + 19.0 * np.exp(-0.8 * times))
    counts = rng.poisson(np.log1p(np.exp(0.4 * latent - 1.0)))
    return xr.Dataset(
        {
            "population_count": (
                ("sweep", "time"),
                counts[None].astype(float),
                {"units": "count", "role": "observed"},
            )
        },
        coords={"sweep": [0], "time": times},
    )


TOY_SPEC = bayesude.ModelSpecification(
    mechanistic="logistic_growth",
    observed={"population_count": "y"},
    fixed={"K": 10.0},
    initial_state={"y": 0.5},
    observations={"population_count": ObservationModel(family="poisson")},
)


@pytest.fixture(scope="module")
def toy_fit():
    data = _toy_counts()
    idata = bayesude.fit(
        TOY_SPEC,
        data.isel(time=slice(0, 60)),
        method="svi",
        num_samples=200,
        svi_steps=800,
        svi_learning_rate=0.02,
        seed=0,
        progress_bar=False,
    )
    return data, idata


def test_leave_future_out_matches_a_direct_computation(toy_fit):
    data, idata = toy_fit
    result = leave_future_out(TOY_SPEC, idata, data, max_draws=50)

    posterior = idata.posterior.stack(sample=("chain", "draw"))
    chosen = np.unique(np.linspace(0, posterior.sizes["sample"] - 1, 50).astype(int))
    times = data["time"].values[60:]
    observed = data["population_count"].values[0, 60:]
    r = posterior["r"].values[chosen][:, None]
    latent = 10.0 / (1 + 19.0 * np.exp(-r * times))
    gain = posterior["gain_population_count"].values[chosen][:, None]
    offset = posterior["offset_population_count"].values[chosen][:, None]
    log_density = scipy.stats.poisson(np.log1p(np.exp(gain * latent + offset))).logpmf(
        observed
    )
    expected = scipy.special.logsumexp(log_density, axis=0) - np.log(len(chosen))
    assert result["num_observations"] == 30
    assert result["elpd"] == pytest.approx(expected.sum(), rel=1e-4, abs=1e-3)


def test_predictive_statistics_compare_like_with_like(toy_fit):
    _, idata = toy_fit
    stats = predictive_statistics(
        idata, "population_count", threshold=2.0, dt_s=15.0 / 89, segment_s=5.0
    )
    assert stats["predicted_spectrum"].sizes["draw"] == 200
    observed = idata.observed_data["population_count"].values
    direct = burst_statistics(observed, 15.0 / 89, 2.0)
    assert float(stats["observed_fraction_bursting"]) == pytest.approx(
        direct.fraction_bursting
    )
    # A well-specified model's predictive distribution covers the observed value.
    predicted = stats["predicted_fraction_bursting"].values
    low, high = np.quantile(predicted, [0.01, 0.99])
    assert low <= direct.fraction_bursting <= high


def test_toy_fit_is_loo_ready(toy_fit):
    _, idata = toy_fit
    assert np.isfinite(az.loo(idata).elpd_loo)


@pytest.mark.slow
def test_hippocampal_workflow_runs_on_the_real_data(tmp_path):
    from bayesude.batch import run_workflow
    from bayesude.workflow import load_workflow

    summary = run_workflow(
        load_workflow(WORKFLOWS / "hippocampal_population.yaml"),
        tmp_path,
        workers=0,
        progress_bar=False,
    )
    assert len(summary) == 2
    assert (tmp_path / "report.html").exists()
