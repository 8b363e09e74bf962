import json

import arviz as az
import numpy as np
import pytest
from synthetic_fits import make_fit

from bayesude.diagnostics import (
    VERDICT_COLUMNS,
    convergence_verdict,
    fit_summary,
    summarise_fits,
)


def _draws_fit(x: np.ndarray) -> az.InferenceData:
    """A fit whose posterior is one parameter ``x`` with draws ``(chain, draw)``."""
    return az.from_dict(posterior={"x": x})


@pytest.fixture(scope="module")
def well_mixed_summary():
    return fit_summary(make_fit(subject="cell_7", model_name="leaky_nn"))


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


def test_network_weights_are_labelled_as_symmetric_not_failed():
    verdict = convergence_verdict(make_fit(with_network_weights=True))

    # The synthetic weights sit in a different mode in every chain.
    assert verdict["max_rhat_network_weights"] > 1.1
    assert verdict["network_weights"] == "not identifiable by symmetry"
    assert "leak_weights" not in verdict["problems"]


def test_a_network_whose_output_cannot_be_evaluated_is_not_judged_converged():
    # No model specification is stored with the synthetic fit, so the
    # network's output, on which a UDE is judged, cannot be computed.
    verdict = convergence_verdict(make_fit(with_network_weights=True))

    assert np.isnan(verdict["max_rhat_network_output"])
    assert verdict["converged"] is False
    assert verdict["problems"] == (
        "R-hat cannot be computed on the output of network leak (not evaluable "
        "from the stored fit, or constant)"
    )


def test_one_trending_chain_gives_classic_split_rhat_2_64_and_is_not_converged():
    verdict = convergence_verdict(_draws_fit(np.arange(500.0)[None]))

    assert verdict["max_rhat_classic"] == pytest.approx(2.64, abs=0.005)
    assert verdict["max_rhat"] > 2.0
    assert verdict["converged"] is False
    assert verdict["problems"].startswith(
        "only one chain: convergence cannot be judged"
    )


def test_stuck_chain_is_never_converged_and_is_named():
    draws = np.random.default_rng(0).normal(size=(4, 500))
    draws[2] = 0.3

    verdict = convergence_verdict(_draws_fit(draws))

    assert verdict["converged"] is False
    assert verdict["stuck_chains"] == ["chain 2: x"]
    assert "stuck chain 2: x constant over the whole chain" in verdict["problems"]


def test_identical_chains_are_never_converged_and_are_flagged():
    copies = np.repeat(np.random.default_rng(0).normal(size=(1, 500)), 4, axis=0)

    verdict = convergence_verdict(_draws_fit(copies))

    # R-hat alone cannot see copies: it is perfect.
    assert verdict["max_rhat"] < 1.01
    assert verdict["converged"] is False
    assert len(verdict["duplicate_chains"]) == 6
    assert "chains 0 and 1 are identical copies" in verdict["problems"]


def test_constant_parameter_has_no_rhat_and_fails():
    verdict = convergence_verdict(_draws_fit(np.full((4, 100), 2.0)))

    assert np.isnan(verdict["max_rhat"])
    assert verdict["converged"] is False
    assert "R-hat cannot be computed on x" in verdict["problems"]


def test_chains_in_different_modes_are_not_converged_and_name_the_parameter():
    summary = fit_summary(make_fit(tau_m_chain_offsets_ms=[0.0, 0.0, 4.0, 4.0]))

    assert summary["max_rhat"] > 1.1
    assert summary["converged"] is False
    assert "on tau_m" in summary["problems"]
    assert "on V_rest" not in summary["problems"]


def test_single_chain_of_a_good_sampler_is_still_not_converged():
    summary = fit_summary(make_fit(num_chains=1, num_draws=2000))

    assert summary["converged"] is False
    assert summary["num_chains"] == 1
    assert "only one chain" in summary["problems"]


def test_divergences_and_solver_failures_are_counted_per_chain():
    fit = make_fit(
        diverging_per_chain=[2, 0, 5, 1],
        solver_failures_per_chain=[0, 3, 0, 1],
        warmup_solver_failures=7,
    )

    summary = fit_summary(fit)

    assert summary["divergences"] == 8
    assert summary["divergences_per_chain"] == [2, 0, 5, 1]
    assert summary["solver_failures_per_chain"] == [0, 3, 0, 1]
    # The synthetic warm-up marks its first 7 transitions in chain order.
    assert summary["warmup_solver_failures_per_chain"] == [7, 0, 0, 0]
    assert summary["warmup_solver_failures"] == 7
    assert summary["converged"] is False
    assert "8 divergent transitions (per chain: 2 0 5 1)" in summary["problems"]
    assert (
        "4 proposals rejected because the ODE solve failed (per chain: 0 3 0 1)"
        in summary["problems"]
    )


def test_solver_failures_do_not_block_convergence_but_are_listed():
    summary = fit_summary(make_fit(solver_failures_per_chain=[1]))

    assert summary["converged"] is True
    assert summary["problems"] == (
        "1 proposal rejected because the ODE solve failed (per chain: 1 0 0 0)"
    )


def test_low_energy_bfmi_blocks_convergence_and_names_the_chain():
    fit = make_fit()
    rng = np.random.default_rng(3)
    energy = rng.normal(size=(4, 500))
    # A random walk in energy: transitions barely change it relative to its
    # marginal spread, the signature of poor exploration (E-BFMI near 0).
    energy[1] = np.cumsum(rng.normal(size=500))
    fit.sample_stats["energy"] = (("chain", "draw"), energy)

    verdict = convergence_verdict(fit)

    assert verdict["bfmi_per_chain"][1] < 0.3
    assert min(verdict["bfmi_per_chain"][i] for i in (0, 2, 3)) > 1.5
    assert verdict["converged"] is False
    assert "E-BFMI below 0.3: " in verdict["problems"]
    assert "in chain 1" in verdict["problems"]


def test_tree_depth_saturation_is_reported_without_failing_the_fit():
    fit = make_fit()
    fit.posterior.attrs["inference_settings"] = json.dumps({"max_tree_depth": 3})

    verdict = convergence_verdict(fit)

    # Every synthetic transition has tree depth 3.
    assert verdict["tree_depth_saturation"] == 1.0
    assert verdict["converged"] is True
    assert "100% of transitions hit the maximum tree depth" in verdict["problems"]


def test_tree_depth_saturation_counts_leapfrog_steps_where_stored():
    fit = make_fit(num_draws=100)
    fit.posterior.attrs["inference_settings"] = json.dumps({"max_tree_depth": 4})
    # Depth 4 takes 15 steps: a quarter of the transitions saturate.
    steps = np.where(np.arange(100) % 4 == 0, 15, 7)
    fit.sample_stats["n_steps"] = (("chain", "draw"), np.tile(steps, (4, 1)))

    assert convergence_verdict(fit)["tree_depth_saturation"] == 0.25


def test_verdict_has_its_documented_columns():
    verdict = convergence_verdict(make_fit(num_draws=100))

    assert list(verdict) == VERDICT_COLUMNS


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
    assert {"max_rhat", "elpd_loo", "elpd_waic", "problems"} <= set(table.columns)


def test_non_finite_log_likelihood_is_explained_in_problems_not_raised():
    summary = fit_summary(make_fit(non_finite_log_likelihood=True))

    assert np.isnan(summary["elpd_loo"])
    assert "LOO not computed: Model 'leaky'" in summary["problems"]
    assert "1 non-finite values (1 -inf, 0 NaN" in summary["problems"]
