"""Stiff problems: implicit solvers, automatic choice, advice when explicit fails."""

import dataclasses

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from numpyro.infer.util import log_density

import bayesude
from bayesude.core.numerical_warnings import StiffnessWarning
from bayesude.core.solve import SolverSettings, solve_at_times
from bayesude.inference.model import build_model
from bayesude.inference.preflight import resolve_solver
from bayesude.inference.prepared_data import prepare_data

MU = 1000.0
#: Zero crossings of x (down, up, down) of Van der Pol at mu = 1000 from (2, 0),
#: by scipy's Radau at rtol = atol = 1e-8; the period is about 1614.4.
REFERENCE_CROSSINGS = np.array([807.09, 1614.29, 2421.49])
PERIOD = 1614.4
OBSERVATION_TIMES = np.linspace(0.0, 3000.0, 31)


def _van_der_pol(t, y, mu):
    return jnp.stack([y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]])


def _zero_crossings(times, x):
    index = np.flatnonzero(np.sign(x[:-1]) != np.sign(x[1:]))
    return times[index] - x[index] * (times[index + 1] - times[index]) / (
        x[index + 1] - x[index]
    )


@pytest.mark.parametrize("root_finder", ["very_chord", "newton"])
def test_implicit_solver_matches_the_reference_crossings_of_stiff_van_der_pol(
    root_finder,
):
    times = jnp.linspace(0.0, 3000.0, 30001)
    settings = SolverSettings(solver="Kvaerno5", root_finder=root_finder)
    solution = jax.jit(
        lambda mu: solve_at_times(
            _van_der_pol, jnp.array([2.0, 0.0]), times, mu, settings, np.zeros(0)
        )
    )(MU)
    assert bool(solution.success)
    crossings = _zero_crossings(np.asarray(times), np.asarray(solution.states[:, 0]))
    np.testing.assert_allclose(crossings, REFERENCE_CROSSINGS, atol=1e-3 * PERIOD)


def test_explicit_solver_runs_out_of_steps_on_stiff_van_der_pol():
    settings = SolverSettings(solver="Tsit5")
    solution = solve_at_times(
        _van_der_pol,
        jnp.array([2.0, 0.0]),
        jnp.asarray(OBSERVATION_TIMES),
        MU,
        settings,
        np.zeros(0),
    )
    assert not bool(solution.success)
    assert int(solution.failure) == 1  # max_steps


@pytest.fixture(scope="module")
def van_der_pol_data():
    times = jnp.linspace(0.0, 3000.0, 30001)
    settings = SolverSettings(solver="Kvaerno5", rtol=1e-8, atol=1e-8, max_steps=20000)
    clean = solve_at_times(
        _van_der_pol, jnp.array([2.0, 0.0]), times, MU, settings, np.zeros(0)
    ).states[::1000, 0]
    observed = np.asarray(clean) + 0.05 * np.random.default_rng(0).standard_normal(31)
    return xr.Dataset(
        {"x": (("sweep", "time"), observed[None], {"units": "1"})},
        coords={"sweep": [0], "time": ("time", OBSERVATION_TIMES, {"units": "1"})},
    )


def _van_der_pol_spec(solver: str, **settings) -> bayesude.ModelSpecification:
    return bayesude.ModelSpecification(
        mechanistic="van_der_pol",
        observed={"x": "x"},
        initial_state={"x": 2.0, "y": 0.0},
        priors={"mu": bayesude.prior("LogNormal", loc=float(np.log(MU)), scale=0.2)},
        noise_prior_scale=0.1,
        solver=SolverSettings(solver=solver, **settings),
    )


def test_explicit_solver_on_a_stiff_problem_warns_and_names_an_implicit_solver(
    van_der_pol_data,
):
    with pytest.warns(StiffnessWarning, match="looks stiff.*Kvaerno5"):
        table = bayesude.check_model(
            _van_der_pol_spec("Tsit5"), van_der_pol_data, num_draws=3
        )
    assert not table["solved"].any()
    assert table["problem"].str.contains("max_steps=4096").all()
    assert table["problem"].str.contains("looks stiff").all()
    assert table["problem"].str.contains("solver='Kvaerno5'").all()


def test_automatic_solver_is_implicit_for_stiff_and_explicit_for_mild_problems(
    van_der_pol_data,
):
    prepared = prepare_data(_van_der_pol_spec("automatic"), van_der_pol_data, "s")
    stiff = resolve_solver(_van_der_pol_spec("automatic"), prepared)
    assert stiff.solver.solver == "Kvaerno5"
    mild = dataclasses.replace(
        _van_der_pol_spec("automatic"),
        priors={"mu": bayesude.prior("LogNormal", loc=0.0, scale=0.2)},
    )
    assert resolve_solver(mild, prepared).solver.solver == "Tsit5"


def test_log_density_gradient_through_the_implicit_solver_matches_differences(
    van_der_pol_data,
):
    spec = _van_der_pol_spec(
        "Kvaerno5", rtol=1e-8, atol=1e-8, max_steps=20000, adjoint="forward"
    )
    built = build_model(spec, prepare_data(spec, van_der_pol_data, "s"))

    def density(mu):
        values = {"mu": mu, "sigma_x": jnp.asarray(0.05)}
        return log_density(built.model, (), {}, values)[0]

    mu = MU
    gradient = float(jax.jacfwd(density)(jnp.asarray(mu)))
    step = 1e-3 * mu
    density = jax.jit(density)
    difference = float(density(mu + step) - density(mu - step)) / (2 * step)
    assert np.isfinite(gradient)
    assert abs(gradient - difference) <= 1e-2 * abs(difference)


@pytest.mark.slow
def test_short_fit_of_stiff_van_der_pol_covers_the_true_mu(van_der_pol_data):
    idata = bayesude.fit(
        _van_der_pol_spec("automatic"),
        van_der_pol_data,
        num_chains=2,
        num_warmup=200,
        num_samples=200,
        seed=0,
        progress_bar=False,
        num_trajectory_draws=0,
    )
    low, high = np.quantile(idata.posterior["mu"].values, [0.05, 0.95])
    assert low <= MU <= high
    assert float(az.rhat(idata, var_names=["mu"])["mu"]) < 1.05
