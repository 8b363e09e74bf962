"""Encoding/decoding workflow: loaders, the linear baseline, Bayesian decoding."""

import pathlib

import arviz as az
import numpy as np
import pytest
import xarray as xr

import bayesude
from bayesude.core.observations import ObservationModel
from bayesude.core.simulate import simulate
from bayesude.decoding import (
    decode_stimulus,
    decoding_accuracy,
    load_spike_counts_with_stimulus,
    ridge_decoder,
)
from bayesude.models import mechanistic_model

LOCUST = (
    pathlib.Path(__file__).parents[1]
    / "data"
    / "spike_trains"
    / "locust_auditory_receptor_nitime.nc"
)
WORKFLOWS = pathlib.Path(__file__).parents[1] / "workflows"


def test_locust_counts_match_the_documented_spike_numbers():
    """data/MANIFEST.md: 929 and 868 spikes in the two 10 s recordings."""
    totals = [
        load_spike_counts_with_stimulus(LOCUST, r, (0.0, 10.0), 0.01)[
            "spike_count"
        ].sum()
        for r in (1, 2)
    ]
    assert [int(t) for t in totals] == [929, 868]


def test_binned_stimulus_is_the_mean_envelope_in_each_bin():
    data = load_spike_counts_with_stimulus(LOCUST, 1, (1.0, 1.1), 0.005)
    with xr.open_dataset(LOCUST) as source:
        raw = source["stimulus"].sel(recording=1, time=slice(1.0, 1.005 - 1e-9))
        assert float(data["stimulus"][0, 0]) == pytest.approx(float(raw.mean()))
    assert data.sizes["time"] == 20


def test_unknown_recording_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"no recording 3; the file has \[1, 2\]"):
        load_spike_counts_with_stimulus(LOCUST, 3, (0.0, 1.0))


def test_decoding_accuracy_of_a_perfect_estimate():
    truth = np.sin(np.linspace(0, 20, 400))
    result = decoding_accuracy(truth, truth)
    assert result["correlation"] == pytest.approx(1.0)
    assert result["r2"] == pytest.approx(1.0)
    assert result["rmse"] == pytest.approx(0.0)
    assert result["correlation_low"] == pytest.approx(1.0)


def test_ridge_decoder_recovers_a_linear_readout():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=1200).astype(float)
    padded = np.pad(counts, 2)
    stimulus = 0.5 * padded[1:-3] + 0.3 * padded[3:-1]  # lags -1 and +1
    decoded = ridge_decoder(counts[:900], stimulus[:900], counts[900:], lags=3)
    assert decoding_accuracy(stimulus[900:], decoded.prediction)["r2"] > 0.99


# A toy encoding workflow: a known adaptive integrator turns a smooth stimulus
# into Poisson counts; decoding uses the true parameters as a one-draw
# "posterior", so its accuracy depends on the decoder alone.
TRUTH = {"tau_m": 10.0, "E_L": 0.0, "R_in": 1000.0, "tau_w": 100.0, "a": 0.5}
GAIN, OFFSET = 8.0, -1.0
ENCODING = bayesude.ModelSpecification(
    mechanistic="adaptive_lif_subthreshold",
    observed={"spike_count": "V"},
    inputs={"current": "stimulus"},
    fixed={"E_L": 0.0, "R_in": 1000.0},
    input_interpolation="linear",
    observations={"spike_count": ObservationModel(family="poisson")},
)


def _toy_trial(seed):
    rng = np.random.default_rng(seed)
    times_ms = np.arange(0.0, 300.0, 5.0)
    knots = rng.normal(0.3, 0.15, size=times_ms.size // 8 + 1)
    stimulus = np.interp(times_ms, np.arange(knots.size) * 40.0, knots)
    states, _ = simulate(
        mechanistic_model("adaptive_lif_subthreshold"),
        TRUTH,
        {"V": 0.0, "w": 0.0},
        times_ms,
        {"current": stimulus},
    )
    rate = np.log1p(np.exp(GAIN * np.asarray(states["V"]) + OFFSET))
    counts = rng.poisson(rate).astype(float)
    return xr.Dataset(
        {
            "spike_count": (("sweep", "time"), counts[None], {"role": "observed"}),
            "stimulus": (("sweep", "time"), stimulus[None], {"role": "input"}),
        },
        coords={"sweep": [0], "time": ("time", times_ms, {"units": "ms"})},
    )


def _true_posterior():
    values = {
        "tau_m": TRUTH["tau_m"],
        "tau_w": TRUTH["tau_w"],
        "a": TRUTH["a"],
        "gain_spike_count": GAIN,
        "offset_spike_count": OFFSET,
    }
    return az.from_dict(posterior={k: np.full((1, 1), v) for k, v in values.items()})


def test_bayesian_decoder_recovers_the_stimulus_and_its_uncertainty():
    held_out = _toy_trial(seed=1)
    decoded = decode_stimulus(
        ENCODING,
        _true_posterior(),
        held_out,
        stimulus_prior=(0.3, 0.15),
        knot_spacing=8,
        num_encoding_draws=1,
        num_samples_per_draw=200,
        svi_steps=300,
        learning_rate=0.1,
    )
    truth = held_out["stimulus"].values[0]
    accuracy = decoding_accuracy(truth, decoded.mean, samples=decoded.samples)
    # The counts of 60 bins of 5 ms carry limited information: a fair decoder
    # follows the slow envelope, not every knot.
    assert accuracy["correlation"] > 0.4
    assert accuracy["coverage_90"] > 0.6
    assert decoded.samples.shape == (200, truth.size)


@pytest.mark.slow
def test_locust_encoding_workflow_runs_on_the_real_data(tmp_path):
    from bayesude.batch import run_workflow
    from bayesude.workflow import load_workflow

    summary = run_workflow(
        load_workflow(WORKFLOWS / "locust_encoding.yaml"),
        tmp_path,
        workers=0,
        progress_bar=False,
    )
    assert len(summary) == 2
    assert (tmp_path / "report.html").exists()
