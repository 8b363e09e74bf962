"""Fits of synthetic data: recovery, a learned missing term, the result format."""

import arviz as az
import numpy as np
import xarray as xr
from conftest import PASSIVE_TRUTH

import bayesude


def test_passive_membrane_posterior_covers_truth_and_converges(passive_fit):
    rhat = az.rhat(passive_fit, var_names=list(PASSIVE_TRUTH))
    for name, truth in PASSIVE_TRUTH.items():
        low, high = np.quantile(passive_fit.posterior[name].values, [0.05, 0.95])
        assert low <= truth <= high, (
            f"{name}: 90% interval [{low}, {high}] misses {truth}"
        )
        assert float(rhat[name]) < 1.01
    assert int(passive_fit.sample_stats.diverging.sum()) == 0


def test_fit_result_has_every_group_and_one_log_likelihood_per_observation(
    passive_fit, passive_recording
):
    expected_groups = {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
        "warmup_sample_stats",
        "predictions",
    }
    assert expected_groups <= set(passive_fit.groups())
    num_observations = int(np.isfinite(passive_recording["voltage"].values).sum())
    assert passive_fit.log_likelihood["voltage"].shape == (2, 400, num_observations)
    assert passive_fit.posterior_predictive["voltage"].shape == (
        2,
        400,
        num_observations,
    )
    assert "solver_failure" in passive_fit.sample_stats
    attributes = passive_fit.posterior.attrs
    for name in ("model_specification", "solver_settings", "seed", "package_versions"):
        assert name in attributes
    assert np.isfinite(az.loo(passive_fit).elpd_loo)


def test_fit_round_trips_through_netcdf_without_loss(passive_fit, tmp_path):
    path = bayesude.save_fit(passive_fit, tmp_path / "fits" / "synthetic__passive.nc")
    loaded = bayesude.load_fit(path)
    assert set(loaded.groups()) == set(passive_fit.groups())
    for group in passive_fit.groups():
        xr.testing.assert_identical(loaded[group], passive_fit[group])
    spec = bayesude.results.specification_of(loaded)
    assert spec.mechanistic == "passive_membrane"
    assert not list(tmp_path.glob("fits/.*.tmp"))


LOGISTIC_TIMES = np.arange(0.0, 10.01, 0.25)


def _logistic_recording(noise, seed):
    r, capacity, y0 = 0.8, 10.0, 0.1
    exact = capacity / (1.0 + (capacity / y0 - 1.0) * np.exp(-r * LOGISTIC_TIMES))
    observed = exact + noise * np.random.default_rng(seed).standard_normal(exact.shape)
    return xr.Dataset(
        {"y": (("sweep", "time"), observed[None], {"units": "1", "role": "observed"})},
        coords={"sweep": [0], "time": ("time", LOGISTIC_TIMES, {"units": "1"})},
    )


def test_neural_term_learns_the_missing_crowding_term():
    """The network replacing y/K matches it over the visited range, inside its band."""
    data = _logistic_recording(noise=0.05, seed=3)
    spec = bayesude.ModelSpecification(
        mechanistic="logistic_growth",
        observed={"y": "y"},
        fixed={"r": 0.8},
        initial_state={"y": 0.1},
        neural_terms=(
            bayesude.NeuralTerm("crowding_network", replaces="crowding", width=8),
        ),
    )
    idata = bayesude.fit(
        spec,
        data,
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        seed=0,
        progress_bar=False,
        init="svi",
        svi_steps=1000,
        max_tree_depth=8,
    )
    built = bayesude.inference.model.build_model(
        spec, bayesude.inference.prepared_data.prepare_data(spec, data, "subject")
    )
    network = built.networks["crowding_network"]
    weights = idata.posterior["crowding_network_weights"].values.reshape(
        -1, network.num_weights
    )
    # Where the population is at least a fifth of its capacity the data constrain
    # the crowding term; below that the growth is nearly exponential whatever c is.
    grid = np.linspace(2.0, 9.5, 16)
    outputs = np.array([[float(network(w, y)[0]) for y in grid] for w in weights[::10]])
    truth = grid / 10.0
    median = np.median(outputs, axis=0)
    low, high = np.quantile(outputs, [0.05, 0.95], axis=0)
    assert np.max(np.abs(median - truth)) < 0.05
    assert np.mean((low <= truth) & (truth <= high)) >= 0.9
