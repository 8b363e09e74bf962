"""A solve that exhausts its step budget rejects a proposal, not the run."""

import arviz as az
import diffrax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import bayesude

TIMES = np.arange(0.0, 10.01, 0.5)


def _steps_needed(growth_rate: float) -> int:
    def vector_field(t, y, args):
        return growth_rate * y * (1.0 - y / 10.0)

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5(),
        0.0,
        10.0,
        None,
        jnp.array(0.1),
        saveat=diffrax.SaveAt(ts=jnp.asarray(TIMES)),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
        max_steps=100_000,
    )
    return int(solution.stats["num_steps"])


@pytest.fixture(scope="module")
def logistic_problem():
    truth = 10.0 / (1.0 + 99.0 * np.exp(-0.8 * TIMES))
    observed = truth + 0.2 * np.random.default_rng(0).standard_normal(TIMES.shape)
    data = xr.Dataset(
        {"y": (("sweep", "time"), observed[None], {"units": "1"})},
        coords={"sweep": [0], "time": ("time", TIMES, {"units": "1"})},
    )
    max_steps = 2 * _steps_needed(0.8)
    assert _steps_needed(200.0) > max_steps
    spec = bayesude.ModelSpecification(
        mechanistic="logistic_growth",
        observed={"y": "y"},
        initial_state={"y": 0.1},
        priors={
            "r": bayesude.prior("LogNormal", loc=0.0, scale=1.0),
            "K": bayesude.prior("LogNormal", loc=float(np.log(10.0)), scale=0.3),
        },
        noise_prior_scale=0.5,
        solver=bayesude.SolverSettings(solver="Tsit5", rtol=1e-6, max_steps=max_steps),
    )
    return spec, data


def test_failed_solves_during_warmup_are_rejected_and_counted(logistic_problem):
    spec, data = logistic_problem
    idata = bayesude.fit(
        spec,
        data,
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        seed=0,
        progress_bar=False,
        init="prior",
        initial_values=[{"r": 200.0}, None],
    )
    assert int(idata.warmup_sample_stats["solver_failure"].sel(chain=0).sum()) >= 1
    for name in idata.posterior.data_vars:
        assert np.isfinite(idata.posterior[name].values).all()
    median_r = float(idata.posterior["r"].median())
    assert 0.7 <= median_r <= 0.9
    assert float(az.rhat(idata, var_names=["r"])["r"]) < 1.01


def test_model_check_lists_prior_draws_whose_solve_fails(logistic_problem):
    spec, data = logistic_problem
    table = bayesude.check_model(spec, data, num_draws=100, seed=0)
    failed = table[~table["solved"]]
    assert len(table) == 100
    assert len(failed) >= 1
    assert (failed["r"] > 3.0).all()
    assert failed["problem"].str.contains("max_steps").all()
    assert table.loc[table["solved"], "finite_log_density"].all()


def test_vectorised_chains_report_failed_solves_to_their_own_chain_and_transition():
    import jax
    import jax.numpy as jnp

    from bayesude.inference.solver_failures import SolverFailureLog, host_callback

    log = SolverFailureLog(3, "vectorized")
    log.start_phase(2)
    report_failure = host_callback(log.record_evaluation, only_when_true=True)
    report_end = host_callback(log.record_transition_end)

    def transition(iteration, failed_evaluations):
        for failed in failed_evaluations:
            report_failure(failed)
        report_end(iteration)

    step = jax.jit(jax.vmap(transition))
    step(jnp.zeros(3, int), jnp.array([[False, True], [False, False], [True, True]]))
    step(jnp.ones(3, int), jnp.array([[False, False], [True, False], [False, True]]))

    np.testing.assert_array_equal(log.stop(), [[1, 0], [0, 1], [2, 1]])
