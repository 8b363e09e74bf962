"""Shared fixtures: float64, synthetic recordings, and fits reused across tests."""

import gc
import os

os.environ.setdefault("BAYESUDE_COMPILATION_CACHE", "")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from decay_model import ExponentialDecay  # noqa: E402

import bayesude  # noqa: E402, F401  (switches JAX to float64)
from bayesude.models import MODEL_LIBRARY  # noqa: E402

# A test-only model, registered before test modules build specifications.
MODEL_LIBRARY[ExponentialDecay.name] = ExponentialDecay

PASSIVE_TRUTH = {"tau_m": 15.0, "E_L": -65.0, "R_in": 150.0}
PASSIVE_NOISE_MV = 0.5
STEP_ON_MS, STEP_OFF_MS = 20.0, 120.0


def passive_response(times, amplitude_pa, tau_m, E_L, R_in):
    """Closed-form passive membrane response to one current step (mV)."""
    amplitude_mv = R_in * amplitude_pa * 1e-3
    during = E_L + amplitude_mv * (1.0 - np.exp(-(times - STEP_ON_MS) / tau_m))
    at_off = E_L + amplitude_mv * (1.0 - np.exp(-(STEP_OFF_MS - STEP_ON_MS) / tau_m))
    after = E_L + (at_off - E_L) * np.exp(-(times - STEP_OFF_MS) / tau_m)
    return np.where(
        times < STEP_ON_MS, E_L, np.where(times < STEP_OFF_MS, during, after)
    )


def membrane_recording(
    amplitudes_pa, truth, noise_mv, seed=0, dt_ms=1.0, t_end_ms=200.0
):
    """A synthetic current-clamp recording, dims (sweep, time)."""
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, t_end_ms, dt_ms)
    voltage = np.stack([passive_response(times, a, **truth) for a in amplitudes_pa])
    voltage = voltage + noise_mv * rng.standard_normal(voltage.shape)
    current = np.stack(
        [
            np.where((times >= STEP_ON_MS) & (times < STEP_OFF_MS), a, 0.0)
            for a in amplitudes_pa
        ]
    )
    return xr.Dataset(
        {
            "voltage": (
                ("sweep", "time"),
                voltage,
                {"units": "mV", "role": "observed"},
            ),
            "current": (("sweep", "time"), current, {"units": "pA", "role": "input"}),
        },
        coords={
            "sweep": np.arange(len(amplitudes_pa)),
            "time": ("time", times, {"units": "ms"}),
        },
    )


@pytest.fixture(scope="session")
def passive_recording():
    return membrane_recording([-100.0, -50.0], PASSIVE_TRUTH, PASSIVE_NOISE_MV)


@pytest.fixture(scope="session")
def passive_fit(passive_recording):
    """NUTS fit of the passive membrane to synthetic data, shared by several tests."""
    spec = bayesude.ModelSpecification(
        mechanistic="passive_membrane", observed={"voltage": "V"}
    )
    return bayesude.fit(
        spec,
        passive_recording,
        num_chains=2,
        num_warmup=300,
        num_samples=400,
        seed=1,
        progress_bar=False,
        init="svi",
        svi_steps=500,
        subject="synthetic",
        model_name="passive",
    )


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free each test file's compiled programs when the file is done.

    Every compiled XLA program keeps its machine code mapped in memory; a
    single process that runs the whole suite accumulated enough of them for
    XLA's compiler to crash late in the run. Programs shared through
    session fixtures stay alive through those fixtures.
    """
    yield
    jax.clear_caches()
    gc.collect()
