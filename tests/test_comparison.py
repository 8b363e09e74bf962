import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy import stats

from bayesude.comparison import (
    TIME_SERIES_NOTE,
    compare_models,
    leave_one_subject_out,
    loo_summary,
    pareto_k_threshold,
    pointwise_log_likelihood,
)

NUM_CHAINS, NUM_DRAWS = 4, 250
NUM_SWEEPS, NUM_TIMES = 2, 25


def _cell():
    """One synthetic cell: a 50-point voltage trace and a spike count per sweep."""
    rng = np.random.default_rng(0)
    time = np.tile(np.linspace(0.0, 100.0, NUM_TIMES), NUM_SWEEPS)
    sweep = np.repeat(np.arange(NUM_SWEEPS), NUM_TIMES)
    # The cell adapts: its voltage relaxes after the onset, which a passive
    # membrane (constant plateau) cannot follow.
    truth = -60.0 + 5.0 * np.exp(-time / 30.0) + 2.0 * sweep
    voltage = truth + 0.5 * rng.normal(size=time.size)
    counts = np.array([3.0, 7.0])
    return time, sweep, truth, voltage, counts


def _fit(plateau_shift_mv: float, adapts: bool, seed: int) -> az.InferenceData:
    """A fit whose posterior mean voltage follows the cell (``adapts``) or not."""
    rng = np.random.default_rng(seed)
    time, sweep, truth, voltage, counts = _cell()
    shape = (NUM_CHAINS, NUM_DRAWS)
    offset = 0.1 * rng.normal(size=shape)
    mean = (truth if adapts else np.full_like(truth, truth.mean())) + plateau_shift_mv
    mean = mean + offset[..., None]
    sigma = 0.5 * np.exp(0.05 * rng.normal(size=shape))
    rate = counts * np.exp(0.1 * rng.normal(size=(*shape, NUM_SWEEPS)))
    log_likelihood = {
        "voltage": stats.norm.logpdf(voltage, mean, sigma[..., None]),
        "spike_count": stats.poisson.logpmf(counts, rate),
    }
    return az.from_dict(
        posterior={"offset": offset, "sigma_voltage": sigma},
        log_likelihood=log_likelihood,
        observed_data={"voltage": voltage, "spike_count": counts},
        dims={
            "voltage": ["voltage_observation"],
            "spike_count": ["spike_count_observation"],
        },
    )


@pytest.fixture(scope="module")
def fits():
    return {
        "passive": _fit(0.0, adapts=False, seed=1),
        "adaptation": _fit(0.0, adapts=True, seed=2),
    }


def _corrupted(fit: az.InferenceData, value: float) -> az.InferenceData:
    corrupted = fit.copy()
    values = corrupted.log_likelihood["voltage"].values.copy()
    values[0, 3, 7] = value
    corrupted.log_likelihood["voltage"] = (
        corrupted.log_likelihood["voltage"].dims,
        values,
    )
    return corrupted


def _plain_loo(log_likelihood: xr.DataArray, posterior) -> float:
    single = az.InferenceData(
        posterior=posterior, log_likelihood=xr.Dataset({"y": log_likelihood})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(az.loo(single)["elpd_loo"])


def test_two_observed_variables_are_compared_jointly_with_finite_elpd(fits):
    table = compare_models(fits)

    assert list(table.index) == ["adaptation", "passive"]
    assert np.isfinite(table["elpd_loo"]).all()
    # Different observations are concatenated: elpd adds over the two variables.
    fit = fits["adaptation"]
    expected = _plain_loo(fit.log_likelihood["voltage"], fit.posterior) + _plain_loo(
        fit.log_likelihood["spike_count"], fit.posterior
    )
    assert table.loc["adaptation", "elpd_loo"] == pytest.approx(expected, rel=1e-10)


def test_var_name_compares_one_observed_variable(fits):
    table = compare_models(fits, var_name="spike_count")
    fit = fits["passive"]

    expected = _plain_loo(fit.log_likelihood["spike_count"], fit.posterior)

    assert table.loc["passive", "elpd_loo"] == pytest.approx(expected, rel=1e-10)


def test_unknown_var_name_is_named_in_the_error(fits):
    with pytest.raises(ValueError, match="no log-likelihood for var_name='current'"):
        compare_models(fits, var_name="current")


def test_observations_on_a_shared_dimension_are_summed_per_point(fits):
    fit = fits["passive"]
    shared = fit.copy()
    shared.log_likelihood["current"] = 0.5 * shared.log_likelihood["voltage"]

    pointwise = pointwise_log_likelihood(shared)

    # 50 voltage points (voltage and current summed) and 2 spike counts.
    assert pointwise.sizes["observation"] == 52
    np.testing.assert_allclose(
        pointwise.values[..., :50], 1.5 * fit.log_likelihood["voltage"].values
    )


@pytest.mark.parametrize(
    ("bad_value", "counted"), [(-np.inf, "1 -inf, 0 NaN"), (np.nan, "0 -inf, 1 NaN")]
)
def test_non_finite_log_likelihood_raises_an_error_that_counts_and_locates_it(
    fits, bad_value, counted
):
    broken = {**fits, "adaptation": _corrupted(fits["adaptation"], bad_value)}

    with pytest.raises(ValueError, match="non-finite|-inf|NaN") as error:
        compare_models(broken)

    message = str(error.value)
    assert "Model 'adaptation'" in message
    assert f"'voltage' has 1 non-finite values ({counted}" in message
    assert "chain 0, draw 3, voltage_observation 7" in message


def test_non_finite_log_likelihood_never_gives_a_silent_nan(fits):
    with pytest.raises(ValueError, match="non-finite"):
        loo_summary(_corrupted(fits["passive"], -np.inf))


@pytest.mark.parametrize(
    ("num_draws", "threshold"), [(100, 0.5), (1000, 0.667), (4000, 0.7)]
)
def test_pareto_k_threshold_depends_on_the_number_of_draws(num_draws, threshold):
    assert pareto_k_threshold(num_draws) == pytest.approx(threshold, abs=5e-4)


def test_pareto_k_threshold_needs_more_than_ten_draws():
    with pytest.raises(ValueError, match="more than 10 posterior draws"):
        pareto_k_threshold(10)


def test_comparison_table_uses_the_sample_size_threshold(fits):
    table = compare_models(fits)

    # 4 chains x 250 draws.
    assert table["pareto_k_threshold"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert (table["num_high_pareto_k"] >= 0).all()


def test_waic_comparison_agrees_with_loo_on_the_ranking(fits):
    table = compare_models(fits, ic="waic")

    assert list(table.index) == ["adaptation", "passive"]
    assert np.isfinite(table["elpd_waic"]).all()


def test_loo_summary_reports_waic_and_threshold(fits):
    summary = loo_summary(fits["adaptation"])

    assert summary["pareto_k_threshold"] == pytest.approx(2 / 3)
    assert summary["elpd_waic"] == pytest.approx(summary["elpd_loo"], abs=1.0)


def test_time_series_note_says_loo_measures_interpolation_and_points_to_lfo():
    assert "interpolation" in TIME_SERIES_NOTE
    assert "leave-future-out" in TIME_SERIES_NOTE
    assert "leave-one-subject-out" in TIME_SERIES_NOTE


def test_leave_one_subject_out_says_what_it_needs_and_what_to_use_instead(fits):
    with pytest.raises(NotImplementedError, match="hierarchical fit across subjects"):
        leave_one_subject_out(fits)
