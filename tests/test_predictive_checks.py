import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayesude.predictive_checks import (
    firing_rate_curve,
    interspike_intervals,
    observation_kind,
    power_spectra,
    residuals,
    spike_count_check,
)

BIN_MS = 1.0


def _fit(
    name: str,
    observed: np.ndarray,
    predicted: np.ndarray,
    sweep: np.ndarray,
    time: np.ndarray,
    attrs: dict | None = None,
    extra_coords: dict | None = None,
) -> az.InferenceData:
    """A fit with one observed variable and its posterior predictive draws."""
    dim = f"{name}_observation"
    coords = {dim: np.arange(observed.size), "sweep": (dim, sweep), "time": (dim, time)}
    coords.update({k: (dim, v) for k, v in (extra_coords or {}).items()})
    num_chains, num_draws = predicted.shape[:2]
    return az.InferenceData(
        observed_data=xr.Dataset(
            {name: ((dim,), observed, attrs or {})}, coords=coords
        ),
        posterior_predictive=xr.Dataset(
            {name: (("chain", "draw", dim), predicted)},
            coords={
                "chain": np.arange(num_chains),
                "draw": np.arange(num_draws),
                **coords,
            },
        ),
    )


def _trace_fit(seed=0):
    rng = np.random.default_rng(seed)
    time = np.tile(np.arange(200.0), 2)
    sweep = np.repeat([0, 1], 200)
    truth = -65.0 + 5.0 * np.exp(-time / 30.0)
    observed = truth + rng.normal(size=truth.size)
    predicted = truth + rng.normal(size=(2, 500, truth.size))
    return _fit("voltage", observed, predicted, sweep, time, {"units": "mV"})


@pytest.mark.parametrize(
    ("name", "attrs", "kind"),
    [
        ("voltage", {"units": "mV"}, "continuous"),
        ("counts", {"observation_model": "poisson"}, "spike_count"),
        ("counts", {"observation_model": "negative_binomial"}, "spike_count"),
        ("y", {"units": "spikes"}, "spike_count"),
        ("spike_count", {}, "spike_count"),
        ("y", {"units": "Hz"}, "rate"),
        ("population_rate", {"units": "a.u."}, "rate"),
        ("y", {"kind": "rate"}, "rate"),
    ],
)
def test_observation_kind_is_read_from_attributes_units_then_name(name, attrs, kind):
    fit = _fit(
        name, np.zeros(3), np.zeros((1, 2, 3)), np.zeros(3), np.arange(3.0), attrs
    )

    assert observation_kind(fit, name) == kind


def test_residuals_are_observed_minus_predictive_median_with_calibrated_coverage():
    fit = _trace_fit()

    table = residuals(fit, "voltage")

    assert len(table) == 400
    assert list(table["sweep"][:3]) == [0, 0, 0]
    draws = fit.posterior_predictive["voltage"].values[..., 7].ravel()
    expected = fit.observed_data["voltage"].values[7] - np.median(draws)
    assert table["residual"].iloc[7] == pytest.approx(expected)
    # Observation and prediction share the noise model: ~90% inside (SE 1.5%).
    assert table["inside_90"].mean() == pytest.approx(0.9, abs=0.05)
    assert table["standardised"].std() == pytest.approx(1.0, abs=0.1)


def _spike_fit(observed_counts, predicted_counts, stimulus=None):
    num_bins = observed_counts.shape[1]
    time = np.tile(np.arange(num_bins) * BIN_MS, observed_counts.shape[0])
    sweep = np.repeat(np.arange(observed_counts.shape[0]), num_bins)
    extra = None
    if stimulus is not None:
        extra = {"stimulus": np.repeat(stimulus, num_bins)}
    return _fit(
        "spikes",
        observed_counts.ravel().astype(float),
        predicted_counts.reshape(*predicted_counts.shape[:2], -1).astype(float),
        sweep,
        time,
        {"observation_model": "poisson"},
        extra,
    )


def test_spike_counts_per_sweep_compare_observed_with_predictive_quantiles():
    observed = np.zeros((2, 100))
    observed[0, ::10] = 1  # 10 spikes
    observed[1, ::5] = 1  # 20 spikes
    predicted = np.broadcast_to(observed, (2, 50, 2, 100)).copy()
    predicted[:, :, 1, 1] += 2  # the model predicts 2 more spikes in sweep 1

    table = spike_count_check(_spike_fit(observed, predicted), "spikes")

    assert table["observed"].tolist() == [10.0, 20.0]
    assert table["q50"].tolist() == [10.0, 22.0]
    assert table["p_value"].tolist() == [1.0, 1.0]


def test_firing_rate_curve_gives_rate_per_sweep_sorted_by_stimulus():
    rng = np.random.default_rng(0)
    observed = np.zeros((3, 200))
    observed[0, ::20] = 1  # 10 spikes in 200 ms
    observed[1, ::4] = 1  # 50 spikes
    observed[2, ::10] = 1  # 20 spikes
    predicted = rng.poisson(observed.mean(axis=1)[:, None], size=(2, 100, 3, 200))
    fit = _spike_fit(observed, predicted, stimulus=[50.0, 150.0, 100.0])

    curve = firing_rate_curve(fit, "spikes")

    assert curve["stimulus"].tolist() == [50.0, 100.0, 150.0]
    assert curve["observed_rate"].tolist() == pytest.approx([0.05, 0.1, 0.25])
    # 200 Poisson bins: the predictive median rate is within 3 SE of the truth.
    assert curve["rate_q50"].tolist() == pytest.approx([0.05, 0.1, 0.25], abs=0.04)
    assert (curve["rate_q05"] <= curve["observed_rate"]).all()
    assert (curve["rate_q95"] >= curve["observed_rate"]).all()


def test_firing_rate_curve_without_stimulus_says_how_to_give_it():
    fit = _spike_fit(np.ones((1, 5)), np.ones((1, 2, 1, 5)))

    with pytest.raises(ValueError, match="pass stimulus_per_sweep"):
        firing_rate_curve(fit, "spikes")

    curve = firing_rate_curve(fit, "spikes", stimulus_per_sweep={0: 20.0})
    assert curve["observed_rate"].tolist() == [1.0]


def test_interspike_intervals_come_from_spike_times_within_each_sweep():
    observed = np.zeros((2, 50))
    observed[0, [0, 10, 20, 30]] = 1
    observed[1, [5, 5 + 7]] = [2, 1]  # two spikes in one bin: an interval of 0
    predicted = np.broadcast_to(observed, (1, 3, 2, 50))

    intervals = interspike_intervals(_spike_fit(observed, predicted), "spikes")

    assert sorted(intervals["observed"].tolist()) == [0.0, 7.0, 10.0, 10.0, 10.0]
    assert intervals["predicted"].size == 3 * 5


def test_power_spectrum_peaks_at_the_rhythm_of_the_rate():
    rng = np.random.default_rng(0)
    time = np.arange(1024.0)
    rhythm = 5.0 + np.sin(2 * np.pi * 0.05 * time)  # period 20 ms
    observed = rhythm + 0.3 * rng.normal(size=time.size)
    predicted = rhythm + 0.3 * rng.normal(size=(2, 20, time.size))
    fit = _fit("rate", observed, predicted, np.zeros(time.size), time, {"units": "Hz"})

    spectra = power_spectra(fit, "rate")

    frequency = spectra["frequency"].values
    resolution = frequency[1]
    assert frequency[np.argmax(spectra["observed"].values)] == pytest.approx(
        0.05, abs=resolution
    )
    assert frequency[np.argmax(spectra["q50"].values)] == pytest.approx(
        0.05, abs=resolution
    )
    assert (spectra["q05"] <= spectra["q95"]).all()


def test_power_spectrum_of_unevenly_sampled_data_is_refused():
    time = np.array([0.0, 1.0, 3.0, 4.0, 5.0])
    fit = _fit("rate", np.ones(5), np.ones((1, 2, 5)), np.zeros(5), time)

    with pytest.raises(ValueError, match="needs evenly spaced samples; sweep 0"):
        power_spectra(fit, "rate")


def test_a_missing_variable_is_named():
    with pytest.raises(ValueError, match="no observed variable 'current'"):
        residuals(_trace_fit(), "current")
