"""Hodgkin–Huxley: exact rates at their removable singularities, and a stiff fit."""

import time

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import xarray as xr
from numpyro.infer.util import log_density

import bayesude
from bayesude.models.hodgkin_huxley import (
    HodgkinHuxley,
    alpha_h,
    alpha_m,
    alpha_n,
    beta_h,
    beta_m,
    beta_n,
    steady_state,
)

SINGULAR_RATES = [
    # rate, singular voltage (mV), value there (1/ms), slope there (1/(ms mV))
    (alpha_m, -40.0, 1.0, 0.05),
    (alpha_n, -55.0, 0.1, 0.005),
]


@pytest.mark.parametrize(("rate", "voltage", "value", "slope"), SINGULAR_RATES)
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(jnp.float64, 1e-9), (jnp.float32, 1e-4)]
)
def test_rate_functions_are_exact_at_their_removable_singularity(
    rate, voltage, value, slope, dtype, tolerance
):
    v = jnp.asarray(voltage, dtype=dtype)
    assert rate(v).dtype == dtype
    assert abs(float(rate(v)) - value) < tolerance
    assert abs(float(jax.grad(rate)(v)) - slope) < tolerance * slope / value * 10
    assert np.isfinite(float(jax.grad(jax.grad(rate))(v)))


def test_rate_functions_are_continuous_through_the_singularity():
    assert abs(float(alpha_m(jnp.asarray(-40.0 + 1e-6))) - 1.00000005) < 1e-9
    voltages = jnp.linspace(-40.5, -39.5, 1001)
    slopes = jax.vmap(jax.grad(alpha_m))(voltages)
    assert np.all(np.isfinite(slopes))
    assert np.max(np.abs(np.diff(np.asarray(alpha_m(voltages))))) < 1e-4


def test_rates_do_not_overflow_far_from_rest():
    voltages = jnp.asarray([-5000.0, -200.0, 200.0, 5000.0], dtype=jnp.float32)
    for rate in (alpha_m, alpha_n):
        assert np.all(np.isfinite(rate(voltages)))
        assert np.all(np.isfinite(jax.vmap(jax.grad(rate))(voltages)))


def _constant_recording(times, voltage, current):
    return xr.Dataset(
        {
            "voltage": (("sweep", "time"), voltage[None], {"units": "mV"}),
            "current": (("sweep", "time"), current[None], {"units": "µA/cm²"}),
        },
        coords={"sweep": [0], "time": ("time", times, {"units": "ms"})},
    )


def test_simulation_held_at_the_singular_voltage_has_finite_gradient():
    times = np.linspace(0.0, 10.0, 41)
    data = _constant_recording(times, np.full(times.size, -40.0), np.zeros(times.size))
    spec = bayesude.ModelSpecification(
        mechanistic="hodgkin_huxley",
        observed={"voltage": "V"},
        initial_state={"V": -40.0},
        solver=bayesude.SolverSettings(solver="Kvaerno5"),
    )
    built = bayesude.inference.model.build_model(
        spec, bayesude.inference.prepared_data.prepare_data(spec, data, "cell")
    )
    values = {
        "g_Na": 120.0,
        "g_K": 36.0,
        "g_L": 0.3,
        "E_Na": 50.0,
        "E_K": -77.0,
        "E_L": -54.387,
        "sigma_voltage": 1.0,
    }
    values = {name: jnp.asarray(value) for name, value in values.items()}

    def log_density_at(g_na):
        return log_density(built.model, (), {}, {**values, "g_Na": g_na})[0]

    value, gradient = jax.value_and_grad(log_density_at)(jnp.asarray(120.0))
    assert np.isfinite(float(value)) and np.isfinite(float(gradient))
    assert float(gradient) != 0.0


def test_initial_gates_as_parameters_must_have_unit_interval_support():
    with pytest.raises(ValueError, match="support") as error:
        bayesude.ModelSpecification(
            mechanistic="hodgkin_huxley",
            observed={"voltage": "V"},
            priors={"m_0": bayesude.prior("Normal", loc=0.05, scale=0.1)},
        )
    assert "m_0" in str(error.value) and "unit_interval" in str(error.value)
    spec = bayesude.ModelSpecification(
        mechanistic="hodgkin_huxley",
        observed={"voltage": "V"},
        priors={"m_0": bayesude.prior("Beta", concentration1=1.0, concentration0=9.0)},
    )
    times = np.linspace(0.0, 5.0, 11)
    data = _constant_recording(times, np.full(times.size, -65.0), np.zeros(times.size))
    built = bayesude.inference.model.build_model(
        spec, bayesude.inference.prepared_data.prepare_data(spec, data, "cell")
    )
    assert built.latent_sizes["m_0"] == 1
    assert "h_0" not in built.latent_sizes


# --- a stiff fit ------------------------------------------------------------------

HH_TRUTH = {"g_Na": 120.0, "g_K": 36.0, "g_L": 0.3}
HH_FIXED = {"E_Na": 50.0, "E_K": -77.0, "E_L": -54.387}
STEP_ON, STEP_OFF, STEP_AMPLITUDE = 5.0, 25.0, 10.0


def _reference_trace(times):
    """Hodgkin–Huxley under a current step, by scipy's Radau at tight tolerance."""
    model = HodgkinHuxley()
    params = {**HH_TRUTH, **HH_FIXED}

    def rhs(current):
        def f(t, y):
            state = dict(zip(model.states, y))
            out = model.vector_field(t, state, params, {"current": current}, {})
            return [float(out[name]) for name in model.states]

        return f

    v0 = -65.0
    y = [v0] + [
        float(steady_state(a(v0), b(v0)))
        for a, b in ((alpha_m, beta_m), (alpha_h, beta_h), (alpha_n, beta_n))
    ]
    pieces = []
    edges = [(0.0, STEP_ON, 0.0), (STEP_ON, STEP_OFF, STEP_AMPLITUDE)]
    edges.append((STEP_OFF, times[-1], 0.0))
    for start, stop, current in edges:
        inside = times[(times >= start) & (times < stop)]
        if stop == times[-1]:
            inside = times[times >= start]
        solution = scipy.integrate.solve_ivp(
            rhs(current),
            (start, stop),
            y,
            method="Radau",
            rtol=1e-9,
            atol=1e-9,
            t_eval=inside,
            dense_output=True,
        )
        pieces.append(solution.y[0])
        y = solution.sol(stop)
    return np.concatenate(pieces)


@pytest.mark.slow
def test_hodgkin_huxley_fit_of_a_spiking_trace_with_an_implicit_solver():
    times = np.arange(0.0, 30.0 + 1e-9, 0.5)
    clean = _reference_trace(times)
    assert clean.max() > 20.0  # the step elicits action potentials
    voltage = clean + 1.0 * np.random.default_rng(0).standard_normal(times.size)
    current = np.where((times >= STEP_ON) & (times < STEP_OFF), STEP_AMPLITUDE, 0.0)
    spec = bayesude.ModelSpecification(
        mechanistic="hodgkin_huxley",
        observed={"voltage": "V"},
        fixed=HH_FIXED,
        priors={
            "g_Na": bayesude.prior("LogNormal", loc=float(np.log(100.0)), scale=0.5),
            "g_K": bayesude.prior("LogNormal", loc=float(np.log(30.0)), scale=0.5),
            "g_L": bayesude.prior("LogNormal", loc=float(np.log(0.3)), scale=0.5),
        },
        noise_prior_scale=2.0,
        solver=bayesude.SolverSettings(solver="Kvaerno5", rtol=1e-6, atol=1e-6),
    )
    started = time.perf_counter()
    idata = bayesude.fit(
        spec,
        _constant_recording(times, voltage, current),
        num_chains=2,
        num_warmup=100,
        num_samples=100,
        seed=0,
        progress_bar=False,
        init="prior",
        max_tree_depth=5,
        num_trajectory_draws=0,
    )
    print(f"Hodgkin–Huxley fit: {time.perf_counter() - started:.0f} s")
    rhat = az.rhat(idata, var_names=list(HH_TRUTH))
    for name, truth in HH_TRUTH.items():
        low, high = np.quantile(idata.posterior[name].values, [0.05, 0.95])
        print(f"{name}: 90% interval [{low:.4g}, {high:.4g}], R-hat {rhat[name]:.3f}")
        assert low <= truth <= high
        assert float(rhat[name]) < 1.05
    assert int(idata.sample_stats["solver_failure"].sum()) == 0
