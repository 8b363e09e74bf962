import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from synthetic_fits import make_fit

from bayesude.diagnostics import compare_models, fit_summary, summarise_fits


@pytest.fixture(scope="module")
def well_mixed_fit():
    return make_fit(subject="cell_7", model_name="leaky_nn")


@pytest.fixture(scope="module")
def well_mixed_summary(well_mixed_fit):
    return fit_summary(well_mixed_fit)


def test_well_mixed_chains_have_small_rhat_and_are_converged(well_mixed_summary):
    assert well_mixed_summary["max_rhat"] < 1.01
    assert well_mixed_summary["min_ess_bulk"] >= 400
    assert well_mixed_summary["converged"] is True
    assert well_mixed_summary["problems"] == ""


def test_row_is_labelled_with_subject_model_and_sample_sizes(well_mixed_summary):
    assert well_mixed_summary["subject"] == "cell_7"
    assert well_mixed_summary["model"] == "leaky_nn"
    assert well_mixed_summary["num_chains"] == 4
    assert well_mixed_summary["num_draws"] == 500
    assert well_mixed_summary["wall_time_s"] == 12.5


def test_network_weights_are_excluded_from_rhat_but_reported(well_mixed_summary):
    # The synthetic weights sit in a different mode in every chain.
    assert well_mixed_summary["max_rhat_network_weights"] > 1.1
    assert well_mixed_summary["max_rhat"] < 1.01


def test_chains_in_different_modes_are_not_converged_and_name_the_parameter():
    summary = fit_summary(make_fit(tau_m_chain_offsets_ms=[0.0, 0.0, 4.0, 4.0]))

    assert summary["max_rhat"] > 1.1
    assert summary["converged"] is False
    assert "R-hat" in summary["problems"]
    assert "on tau_m" in summary["problems"]
    assert "V_rest" not in summary["problems"]


def test_single_chain_is_never_converged():
    summary = fit_summary(make_fit(num_chains=1, num_draws=2000))

    assert summary["converged"] is False
    assert summary["num_chains"] == 1
    assert "only one chain: convergence cannot be judged" in summary["problems"]


def test_divergences_and_solver_failures_are_summed_over_chains():
    fit = make_fit(
        diverging_per_chain=[2, 0, 5, 1],
        solver_failures_per_chain=[0, 3, 0, 1],
        warmup_solver_failures=7,
    )

    summary = fit_summary(fit)

    assert summary["divergences"] == 8
    assert summary["solver_failures"] == 4
    assert summary["warmup_solver_failures"] == 7
    assert summary["converged"] is False
    assert "8 divergent transitions" in summary["problems"]
    assert "4 proposals rejected because the ODE solve failed" in summary["problems"]


def test_solver_failures_do_not_block_convergence_but_are_listed():
    summary = fit_summary(make_fit(solver_failures_per_chain=[1]))

    assert summary["converged"] is True
    assert summary["problems"] == "1 proposal rejected because the ODE solve failed"


def test_missing_solver_failure_and_wall_time_give_zero_and_nan():
    summary = fit_summary(make_fit(with_solver_failure=False, wall_time_s=None))

    assert summary["solver_failures"] == 0
    assert np.isnan(summary["wall_time_s"])


def test_loo_matches_arviz_on_a_single_observed_variable(well_mixed_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = az.loo(well_mixed_fit, pointwise=True)

    summary = fit_summary(well_mixed_fit)

    assert summary["elpd_loo"] == pytest.approx(expected["elpd_loo"], rel=1e-12)
    assert summary["elpd_loo_se"] == pytest.approx(expected["se"], rel=1e-12)
    assert summary["p_loo"] == pytest.approx(expected["p_loo"], rel=1e-12)
    assert summary["max_pareto_k"] == pytest.approx(expected["pareto_k"].max())


def _with_second_observed_variable(fit, dim):
    """Copy ``fit`` with a second log-likelihood variable on dimension ``dim``."""
    voltage = fit.log_likelihood["voltage"]
    extra = xr.DataArray(
        0.5 * voltage.values, dims=("chain", "draw", dim), name="current"
    )
    log_likelihood = fit.log_likelihood.drop_vars(["sweep", "time"])
    log_likelihood = log_likelihood.assign(current=extra)
    return az.InferenceData(posterior=fit.posterior, log_likelihood=log_likelihood)


def _elpd_of(pointwise, posterior):
    single = az.InferenceData(
        posterior=posterior, log_likelihood=xr.Dataset({"y": pointwise})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(az.loo(single)["elpd_loo"])


def test_observed_variables_on_separate_dimensions_are_concatenated(well_mixed_fit):
    fit = _with_second_observed_variable(well_mixed_fit, "current_observation")
    log_likelihood = fit.log_likelihood
    # PSIS-LOO treats observations one by one, so concatenation adds elpds.
    expected = _elpd_of(log_likelihood["voltage"], fit.posterior) + _elpd_of(
        log_likelihood["current"], fit.posterior
    )

    assert fit_summary(fit)["elpd_loo"] == pytest.approx(expected, rel=1e-10)


def test_observed_variables_on_a_shared_dimension_are_summed(well_mixed_fit):
    fit = _with_second_observed_variable(well_mixed_fit, "voltage_observation")
    log_likelihood = fit.log_likelihood
    joint = log_likelihood["voltage"] + log_likelihood["current"]

    expected = _elpd_of(joint, fit.posterior)

    assert fit_summary(fit)["elpd_loo"] == pytest.approx(expected, rel=1e-10)


def test_non_finite_log_likelihood_skips_loo_and_says_so():
    summary = fit_summary(make_fit(non_finite_log_likelihood=True))

    assert np.isnan(summary["elpd_loo"])
    assert "1 log-likelihood value not finite" in summary["problems"]


def test_summarise_fits_gives_one_row_per_fit():
    fits = [
        make_fit(subject="cell_1", model_name="leaky"),
        make_fit(subject="cell_1", model_name="leaky_nn", seed=1),
        make_fit(subject="cell_2", model_name="leaky", num_chains=1, seed=2),
    ]

    table = summarise_fits(fits)

    assert len(table) == 3
    assert list(table["model"]) == ["leaky", "leaky_nn", "leaky"]
    assert list(table["converged"]) == [True, True, False]
    assert {"max_rhat", "elpd_loo", "problems"} <= set(table.columns)


def test_compare_models_ranks_the_better_model_first():
    good = make_fit(model_name="good")
    # Same observations, predictions shifted by a constant: a worse model.
    worse_log_likelihood = good.log_likelihood - 2.0
    worse = az.InferenceData(
        posterior=good.posterior, log_likelihood=worse_log_likelihood
    )

    table = compare_models({"worse": worse, "good": good})

    assert list(table.index) == ["good", "worse"]
    assert table.loc["worse", "elpd_diff"] == pytest.approx(
        2.0 * good.log_likelihood.sizes["voltage_observation"]
    )


def test_compare_models_names_the_model_with_non_finite_log_likelihood():
    fits = {
        "leaky": make_fit(),
        "leaky_nn": make_fit(non_finite_log_likelihood=True, seed=1),
    }

    with pytest.raises(ValueError, match="Model 'leaky_nn' has 1 non-finite"):
        compare_models(fits)


def test_compare_models_rejects_fits_to_different_observations():
    fits = {"short": make_fit(num_times=10), "long": make_fit(num_times=20)}

    with pytest.raises(ValueError, match="same observations"):
        compare_models(fits)
