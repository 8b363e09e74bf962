"""Step stimuli are jump times: exact solutions and gradients, with latent onsets."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from numpyro import handlers
from numpyro.infer.util import log_density

import bayesude
from bayesude.core.inputs import StepStimulus
from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data

TAU_MS, E_L_MV, DRIVE_MV, ONSET_MS, SIGMA_MV = 10.0, -70.0, 15.0, 20.0, 0.5
R_IN_MOHM = 150.0  # R_in * I0 = 150 MΩ * 100 pA = 15 mV
TIMES = np.arange(0.0, 60.0 + 1e-9, 1.0)


def _voltage(t, onset):
    rise = DRIVE_MV * (1.0 - np.exp(-(t - onset) / TAU_MS))
    return np.where(t >= onset, E_L_MV + rise, E_L_MV)


def _voltage_by_onset(t, onset):
    slope = -(DRIVE_MV / TAU_MS) * np.exp(-(t - onset) / TAU_MS)
    return np.where(t >= onset, slope, 0.0)


@pytest.fixture(scope="module")
def onset_problem():
    observed = _voltage(TIMES, ONSET_MS)
    observed = observed + SIGMA_MV * np.random.default_rng(0).standard_normal(
        TIMES.size
    )
    data = xr.Dataset(
        {"voltage": (("sweep", "time"), observed[None], {"units": "mV"})},
        coords={"sweep": [0], "time": ("time", TIMES, {"units": "ms"})},
    )
    spec = bayesude.ModelSpecification(
        mechanistic="passive_membrane",
        observed={"voltage": "V"},
        stimuli=(StepStimulus("current", amplitude=100.0, onset="t_on"),),
        priors={"t_on": bayesude.prior("Uniform", low=5.0, high=40.0)},
        solver=bayesude.SolverSettings(adjoint="forward"),
    )
    built = build_model(spec, prepare_data(spec, data, "cell"))
    return spec, data, built, observed


def _truth(onset):
    values = {
        "tau_m": TAU_MS,
        "E_L": E_L_MV,
        "R_in": R_IN_MOHM,
        "t_on": onset,
        "V_0": [E_L_MV],
        "sigma_voltage": SIGMA_MV,
    }
    return {name: jnp.asarray(value) for name, value in values.items()}


def test_solution_across_a_latent_onset_matches_the_closed_form(onset_problem):
    _, _, built, _ = onset_problem

    trace = handlers.trace(
        handlers.seed(handlers.substitute(built.model, data=_truth(ONSET_MS)), 0)
    ).get_trace(observe=False, record_trajectories=True)
    voltage = np.asarray(trace["voltage_trajectory"]["value"])[0]
    expected = {21.0: -68.5726, 30.0: -60.5182, 60.0: -55.2747}
    for time, value in expected.items():
        assert abs(voltage[int(time)] - value) < 1e-3


@pytest.mark.parametrize("onset", [18.0, 20.0, 23.5])
def test_log_likelihood_gradient_by_onset_matches_the_closed_form(onset_problem, onset):
    _, _, built, observed = onset_problem

    def density(value):
        return log_density(built.model, (), {}, {**_truth(onset), "t_on": value})[0]

    gradient = float(jax.jacfwd(density)(jnp.asarray(onset)))
    residual = observed - _voltage(TIMES, onset)
    analytic = np.sum(residual / SIGMA_MV**2 * _voltage_by_onset(TIMES, onset))
    assert gradient != 0.0
    assert abs(gradient - analytic) < 1e-2 * abs(analytic)


@pytest.mark.slow
def test_chains_started_far_apart_agree_on_the_onset(onset_problem):
    spec, data, _, _ = onset_problem
    idata = bayesude.fit(
        spec,
        data,
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        seed=0,
        progress_bar=False,
        initial_values=[{"t_on": 10.0}, {"t_on": 35.0}],
        num_trajectory_draws=0,
    )
    assert abs(float(idata.posterior["t_on"].mean()) - ONSET_MS) < 0.5
    assert float(az.rhat(idata, var_names=["t_on"])["t_on"]) < 1.01
