"""Initial states as parameters: constraints, random starts, named failures."""

import numpy as np
import pytest
import xarray as xr

import bayesude

TRUTH = {"alpha": 1.0, "beta": 0.1, "gamma": 1.5, "delta": 0.075}
INITIAL = {"x": 10.0, "y": 5.0}
TIMES = np.linspace(0.0, 15.0, 20)


def _lotka_volterra_data(noise=0.1, seed=0):
    from scipy.integrate import solve_ivp

    def rhs(t, state):
        x, y = state
        return [
            TRUTH["alpha"] * x - TRUTH["beta"] * x * y,
            TRUTH["delta"] * x * y - TRUTH["gamma"] * y,
        ]

    solution = solve_ivp(
        rhs, (0.0, 15.0), list(INITIAL.values()), t_eval=TIMES, rtol=1e-10, atol=1e-10
    )
    rng = np.random.default_rng(seed)
    observed = solution.y * np.exp(noise * rng.standard_normal(solution.y.shape))
    return xr.Dataset(
        {
            name: (("sweep", "time"), observed[i][None], {"units": "thousands"})
            for i, name in enumerate(("x", "y"))
        },
        coords={"sweep": [0], "time": ("time", TIMES, {"units": "year"})},
    )


def _spec(**changes):
    settings = {
        "mechanistic": "lotka_volterra",
        "observed": {"x": "x", "y": "y"},
        "observation": "lognormal",
        "noise_prior_scale": 0.5,
    }
    return bayesude.ModelSpecification(**{**settings, **changes})


def test_prior_with_negative_support_for_a_positive_state_is_rejected():
    with pytest.raises(ValueError, match="support") as error:
        _spec(priors={"x_0": bayesude.prior("Normal", loc=10.0, scale=5.0)})
    message = str(error.value)
    assert "x_0" in message and "positive" in message and "LogNormal" in message


def test_failed_initialisation_names_the_offending_site():
    spec = _spec(solver=bayesude.SolverSettings(max_steps=1))
    with pytest.raises(RuntimeError, match="100 attempts") as error:
        bayesude.fit(
            spec,
            _lotka_volterra_data(),
            num_chains=1,
            num_warmup=10,
            num_samples=10,
            progress_bar=False,
        )
    assert "solver_failure (the ODE solve failed" in str(error.value)


@pytest.mark.slow
def test_eight_random_starts_all_complete_and_recover_the_initial_state():
    idata = bayesude.fit(
        _spec(),
        _lotka_volterra_data(),
        num_chains=8,
        num_warmup=300,
        num_samples=300,
        seed=0,
        progress_bar=False,
        init="random",
        num_trajectory_draws=0,
    )
    assert idata.posterior.sizes["chain"] == 8
    for name in idata.posterior.data_vars:
        assert np.isfinite(idata.posterior[name].values).all()
    for state, truth in INITIAL.items():
        per_chain = idata.posterior[f"{state}_0"].mean(dim=("draw", "sweep")).values
        assert np.all(np.abs(per_chain - truth) < 0.2 * truth), (state, per_chain)
