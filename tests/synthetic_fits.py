"""Small synthetic fits in the layout of docs/conventions.md, built with numpy.

The "model" is a membrane relaxing exponentially to rest,
``V(t) = V_rest + (V_0 - V_rest) exp(-t / tau_m)``, observed with Gaussian
noise. Draws are independent normals around fixed values, so a fit with
``chain_offsets=None`` is perfectly mixed; offsets put chains in different
modes.
"""

import arviz as az
import numpy as np
import xarray as xr
from scipy import stats

TAU_M_MS = 10.0
V_REST_MV = -65.0
SIGMA_VOLTAGE_MV = 1.0
NUM_WEIGHTS = 6


def make_fit(
    subject: str = "cell_1",
    model_name: str = "leaky",
    *,
    num_chains: int = 4,
    num_draws: int = 500,
    num_sweeps: int = 2,
    num_times: int = 20,
    tau_m_chain_offsets_ms: list[float] | None = None,
    diverging_per_chain: list[int] | None = None,
    solver_failures_per_chain: list[int] | None = None,
    warmup_solver_failures: int = 0,
    with_solver_failure: bool = True,
    with_predictions: bool = True,
    non_finite_log_likelihood: bool = False,
    wall_time_s: float | None = 12.5,
    with_network_weights: bool = False,
    seed: int = 0,
) -> az.InferenceData:
    """Build one synthetic fit; see the module docstring for the model."""
    rng = np.random.default_rng(seed)
    posterior = _posterior(
        rng, num_chains, num_draws, num_sweeps, tau_m_chain_offsets_ms
    )
    if not with_network_weights:
        posterior = posterior.drop_vars(["leak_weights"])
    posterior.attrs.update(subject=subject, model_name=model_name, time_units="ms")
    if wall_time_s is not None:
        posterior.attrs["wall_time_s"] = wall_time_s

    observed = _observed_data(rng, num_sweeps, num_times)
    mean = _mean_voltage(posterior, observed)
    log_likelihood = stats.norm.logpdf(
        observed["voltage"].values, mean, posterior["sigma_voltage"].values[..., None]
    )
    if non_finite_log_likelihood:
        log_likelihood[0, 0, 0] = -np.inf

    groups = {
        "posterior": posterior,
        "posterior_predictive": _per_observation(
            mean + SIGMA_VOLTAGE_MV * rng.normal(size=mean.shape), observed
        ),
        "log_likelihood": _per_observation(log_likelihood, observed),
        "observed_data": observed,
        "sample_stats": _sample_stats(
            num_chains,
            num_draws,
            diverging_per_chain,
            solver_failures_per_chain,
            with_solver_failure,
        ),
        "warmup_sample_stats": _warmup_sample_stats(num_chains, warmup_solver_failures),
    }
    if with_predictions:
        groups["predictions"] = _predictions(posterior, num_sweeps, num_times)
    return az.InferenceData(**groups)


def _sample_coords(num_chains: int, num_draws: int) -> dict:
    return {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}


def _posterior(rng, num_chains, num_draws, num_sweeps, tau_m_chain_offsets_ms):
    shape = (num_chains, num_draws)
    offsets = np.zeros(num_chains)
    if tau_m_chain_offsets_ms is not None:
        offsets = np.asarray(tau_m_chain_offsets_ms, dtype=float)
    tau_m = TAU_M_MS + 0.5 * rng.normal(size=shape) + offsets[:, None]
    # Each chain finds the same network up to a permutation of hidden units,
    # so the weights disagree between chains while the fit is fine.
    weights = rng.normal(size=(num_chains, 1, NUM_WEIGHTS)) * 5
    weights = weights + 0.1 * rng.normal(size=(num_chains, num_draws, NUM_WEIGHTS))
    return xr.Dataset(
        {
            "tau_m": (("chain", "draw"), tau_m),
            "V_rest": (("chain", "draw"), V_REST_MV + 0.2 * rng.normal(size=shape)),
            "V_0": (
                ("chain", "draw", "sweep"),
                -50.0 + 0.3 * rng.normal(size=(*shape, num_sweeps)),
            ),
            "sigma_voltage": (
                ("chain", "draw"),
                SIGMA_VOLTAGE_MV * np.exp(0.05 * rng.normal(size=shape)),
            ),
            "leak_weights": (("chain", "draw", "leak_weight"), weights),
        },
        coords={
            **_sample_coords(num_chains, num_draws),
            "sweep": np.arange(num_sweeps),
        },
    )


def _relaxation(v_0, v_rest, tau_m, time):
    return v_rest + (v_0 - v_rest) * np.exp(-time / tau_m)


def _observed_data(rng, num_sweeps, num_times) -> xr.Dataset:
    time = np.linspace(0.0, 40.0, num_times)
    sweep = np.repeat(np.arange(num_sweeps), num_times)
    time_of_observation = np.tile(time, num_sweeps)
    voltage = _relaxation(-50.0, V_REST_MV, TAU_M_MS, time_of_observation)
    voltage = voltage + SIGMA_VOLTAGE_MV * rng.normal(size=voltage.shape)
    return xr.Dataset(
        {"voltage": (("voltage_observation",), voltage, {"units": "mV"})},
        coords={
            "voltage_observation": np.arange(voltage.size),
            "sweep": ("voltage_observation", sweep),
            "time": ("voltage_observation", time_of_observation),
        },
    )


def _mean_voltage(posterior: xr.Dataset, observed: xr.Dataset) -> np.ndarray:
    sweep = observed["sweep"].values
    time = observed["time"].values
    v_0 = posterior["V_0"].values[..., sweep]
    return _relaxation(
        v_0,
        posterior["V_rest"].values[..., None],
        posterior["tau_m"].values[..., None],
        time,
    )


def _per_observation(values: np.ndarray, observed: xr.Dataset) -> xr.Dataset:
    num_chains, num_draws, _ = values.shape
    return xr.Dataset(
        {"voltage": (("chain", "draw", "voltage_observation"), values)},
        coords={
            **_sample_coords(num_chains, num_draws),
            "voltage_observation": observed["voltage_observation"].values,
            "sweep": ("voltage_observation", observed["sweep"].values),
            "time": ("voltage_observation", observed["time"].values),
        },
    )


def _flags(num_chains, num_draws, counts_per_chain) -> np.ndarray:
    flags = np.zeros((num_chains, num_draws), dtype=bool)
    for chain, count in enumerate(counts_per_chain or []):
        flags[chain, :count] = True
    return flags


def _sample_stats(
    num_chains, num_draws, diverging, solver_failures, with_solver_failure
):
    stats_vars = {
        "diverging": (("chain", "draw"), _flags(num_chains, num_draws, diverging)),
        "tree_depth": (("chain", "draw"), np.full((num_chains, num_draws), 3)),
    }
    if with_solver_failure:
        stats_vars["solver_failure"] = (
            ("chain", "draw"),
            _flags(num_chains, num_draws, solver_failures).astype(np.int64),
        )
    return xr.Dataset(stats_vars, coords=_sample_coords(num_chains, num_draws))


def _warmup_sample_stats(num_chains, num_failures) -> xr.Dataset:
    num_draws = max(num_failures, 10)
    failures = np.zeros((num_chains, num_draws), dtype=np.int64)
    failures.reshape(-1)[:num_failures] = 1
    return xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros_like(failures, dtype=bool)),
            "solver_failure": (("chain", "draw"), failures),
        },
        coords=_sample_coords(num_chains, num_draws),
    )


def _predictions(posterior: xr.Dataset, num_sweeps, num_times) -> xr.Dataset:
    thinned = posterior.isel(draw=slice(None, None, 10))
    time = np.linspace(0.0, 40.0, 4 * num_times)
    trajectories = _relaxation(
        thinned["V_0"].values[..., None],
        thinned["V_rest"].values[..., None, None],
        thinned["tau_m"].values[..., None, None],
        time,
    )
    return xr.Dataset(
        {"voltage": (("chain", "draw", "sweep", "time"), trajectories)},
        coords={
            "chain": thinned["chain"].values,
            "draw": thinned["draw"].values,
            "sweep": np.arange(num_sweeps),
            "time": time,
        },
    )


def with_observed_variable(
    fit: az.InferenceData,
    name: str,
    observed: np.ndarray,
    predicted: np.ndarray,
    sweep: np.ndarray,
    time: np.ndarray,
    attrs: dict,
) -> az.InferenceData:
    """A copy of ``fit`` with one more observed variable on its own dimension.

    ``predicted`` has shape ``(chain, draw, observation)`` and must match the
    fit's chains and draws; it becomes the posterior predictive draws, and a
    standard normal log-likelihood around them is stored so LOO still works.
    """
    dim = f"{name}_observation"
    # Several observed variables each need their own sweep and time coordinates.
    coords = {
        dim: np.arange(observed.size),
        f"{name}_sweep": (dim, sweep),
        f"{name}_time": (dim, time),
    }
    observed_variable = xr.Dataset({name: ((dim,), observed, attrs)}, coords=coords)
    predicted_variable = xr.Dataset(
        {name: (("chain", "draw", dim), predicted)}, coords=coords
    )
    log_likelihood = xr.Dataset(
        {name: (("chain", "draw", dim), stats.norm.logpdf(observed, predicted, 1.0))},
        coords=coords,
    )
    copy = fit.copy()
    copy.observed_data = xr.merge([copy.observed_data, observed_variable])
    copy.posterior_predictive = xr.merge(
        [copy.posterior_predictive, predicted_variable]
    )
    copy.log_likelihood = xr.merge([copy.log_likelihood, log_likelihood])
    return copy
