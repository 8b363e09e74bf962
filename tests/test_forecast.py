import math

import numpy as np
import pytest
from conftest import PASSIVE_NOISE_MV, PASSIVE_TRUTH, membrane_recording

import bayesude
from bayesude.forecast import leave_future_out

FIT_SETTINGS = {"num_chains": 2, "num_warmup": 200, "num_samples": 200, "seed": 0}


@pytest.fixture(scope="module")
def recording():
    # Two current steps, 50 samples per sweep at 4 ms; the step ends at 120 ms.
    return membrane_recording(
        [-100.0, -50.0], PASSIVE_TRUTH, PASSIVE_NOISE_MV, dt_ms=4.0
    )


@pytest.fixture(scope="module")
def spec():
    return bayesude.ModelSpecification(
        mechanistic="passive_membrane", observed={"voltage": "V"}
    )


# One refit costs about 100 s of CPU: too much for the default suite.
@pytest.mark.slow
def test_exact_forecast_of_a_well_specified_model_scores_the_noise_entropy(
    spec, recording
):
    table = leave_future_out(
        spec, recording, [100.0], method="exact", subject="cell", **FIT_SETTINGS
    )

    (row,) = table.to_dict("records")
    assert bool(row["refit"])
    assert row["num_observations"] == 2 * 25
    # A well-specified model forecasts each point with the density of its
    # Gaussian noise: E[log N(y | mu, sigma)] = -log(2 pi sigma^2) / 2 - 1/2,
    # -0.726 per point at sigma = 0.5 mV; the block's sampling SE is ~0.1.
    entropy = -0.5 * math.log(2 * math.pi * PASSIVE_NOISE_MV**2) - 0.5
    assert row["elpd"] / row["num_observations"] == pytest.approx(entropy, abs=0.25)
    assert table.attrs["elpd_lfo"] == pytest.approx(row["elpd"])
    assert table.attrs["num_refits"] == 1


@pytest.mark.parametrize(
    ("splits", "method", "message"),
    [
        ([100.0], "future", "method must be one of"),
        ([120.0, 100.0], "exact", "increasing"),
        ([0.0], "exact", "observations before it"),
        ([500.0], "exact", "observations after it"),
    ],
)
def test_bad_leave_future_out_settings_are_refused_before_fitting(
    spec, recording, splits, method, message
):
    with pytest.raises(ValueError, match=message):
        leave_future_out(spec, recording, splits, method=method)


@pytest.mark.slow
def test_psis_forecast_matches_exact_refits_with_fewer_fits(spec, recording):
    splits = [100.0, 140.0, 170.0]
    exact = leave_future_out(
        spec, recording, splits, method="exact", subject="cell", **FIT_SETTINGS
    )
    approximate = leave_future_out(
        spec, recording, splits, method="psis", subject="cell", **FIT_SETTINGS
    )

    assert exact.attrs["num_refits"] == 3
    assert approximate.attrs["num_refits"] < 3
    np.testing.assert_allclose(approximate["elpd"], exact["elpd"], atol=1.5)
