"""Memory: solves save observation times only; trajectories kept only when asked."""

import re
import warnings

import jax
import numpy as np
import pytest
import xarray as xr

import bayesude
from bayesude.core.numerical_warnings import TrajectorySizeWarning
from bayesude.inference.model import build_model
from bayesude.inference.preflight import prior_draws
from bayesude.inference.prepared_data import prepare_data
from bayesude.results import assemble_inference_data


def _hodgkin_huxley_recording(num_times: int) -> xr.Dataset:
    times = np.linspace(0.0, 20.0, num_times)
    return xr.Dataset(
        {
            "voltage": (
                ("sweep", "time"),
                np.full((1, num_times), -65.0),
                {"units": "mV"},
            ),
            "current": (
                ("sweep", "time"),
                np.zeros((1, num_times)),
                {"units": "µA/cm²"},
            ),
        },
        coords={"sweep": [0], "time": ("time", times, {"units": "ms"})},
    )


HH_SPEC = bayesude.ModelSpecification(
    mechanistic="hodgkin_huxley",
    observed={"voltage": "V"},
    solver=bayesude.SolverSettings(solver="Kvaerno5", adjoint="recursive_checkpoint"),
)


def test_keeping_every_trajectory_warns_its_size_before_sampling():
    num_chains, num_draws, num_times, num_states = 4, 200, 2001, 4
    with warnings.catch_warnings():
        # Turn the warning into an error: it must come before any sampling.
        warnings.simplefilter("error", TrajectorySizeWarning)
        with pytest.raises(TrajectorySizeWarning, match="MB") as caught:
            bayesude.fit(
                HH_SPEC,
                _hodgkin_huxley_recording(num_times),
                num_chains=num_chains,
                num_samples=num_draws,
                save_trajectories=True,
                progress_bar=False,
            )
    estimate_mb = float(re.search(r"about ([\d.]+) MB", str(caught.value)).group(1))
    expected_mb = num_chains * num_draws * num_times * num_states * 8 / 1e6
    assert abs(estimate_mb - expected_mb) <= 0.1 * expected_mb


@pytest.fixture(scope="module")
def logistic_draws():
    times = np.linspace(0.0, 10.0, 21)
    data = xr.Dataset(
        {"y": (("sweep", "time"), (0.1 + 0.4 * times)[None], {"units": "1"})},
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )
    spec = bayesude.ModelSpecification(
        mechanistic="logistic_growth",
        observed={"y": "y"},
        initial_state={"y": 0.1},
        solver=bayesude.SolverSettings(adjoint="recursive_checkpoint"),
    )
    prepared = prepare_data(spec, data, "s")
    draws = prior_draws(spec, prepared, 3 * 40, seed=0)
    samples = {
        name: value.reshape((3, 40) + value.shape[1:]) for name, value in draws.items()
    }
    return spec, prepared, build_model(spec, prepared), samples


def _assemble(logistic_draws, **options):
    spec, prepared, built, samples = logistic_draws
    return assemble_inference_data(
        spec=spec,
        data=prepared,
        built=built,
        samples=samples,
        stats={},
        key=jax.random.key(0),
        attributes={},
        **options,
    )


def test_no_group_has_a_time_dimension_unless_trajectories_are_asked_for(
    logistic_draws,
):
    idata = _assemble(logistic_draws, num_trajectory_draws=0)
    assert "predictions" not in idata.groups()
    for group in idata.groups():
        for name, variable in idata[group].data_vars.items():
            assert "time" not in variable.dims, (group, name)
    thinned = _assemble(logistic_draws, num_trajectory_draws=10)
    assert thinned.predictions["y"].shape == (3, 10, 1, 21)  # 10 draws per chain
    every = _assemble(logistic_draws, num_trajectory_draws=0, save_trajectories=True)
    assert every.predictions["y"].shape == (3, 40, 1, 21)


def test_predictive_pass_in_chunks_equals_the_pass_in_one_go(logistic_draws):
    chunked = _assemble(logistic_draws, num_trajectory_draws=7, chunk_size=16)
    whole = _assemble(logistic_draws, num_trajectory_draws=7, chunk_size=120)
    xr.testing.assert_allclose(chunked.log_likelihood, whole.log_likelihood)
    xr.testing.assert_allclose(chunked.predictions, whole.predictions)
