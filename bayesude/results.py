"""Assembling a fit into ArviZ InferenceData, and saving and loading it.

The layout is described in ``docs/conventions.md``. Posterior predictive draws
and pointwise log-likelihoods are computed from one pass of noise-free
trajectories over the posterior draws, so the model is compiled once for both.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pathlib
from typing import Any

import arviz as az
import jax
import numpy as np
import xarray as xr
from numpyro import handlers

from bayesude.core.specification import ModelSpecification
from bayesude.files import atomic_path
from bayesude.inference.model import (
    SOLVER_SUCCESS_SITE,
    BuiltModel,
    build_model,
    trajectory_names,
)
from bayesude.inference.observations import (
    expected_observation,
    pointwise_log_likelihood,
    predictive_draws,
)
from bayesude.inference.prepared_data import PreparedData

#: Packages whose versions are stored with every fit.
RECORDED_PACKAGES = (
    "bayesude",
    "jax",
    "jaxlib",
    "numpyro",
    "diffrax",
    "equinox",
    "arviz",
    "xarray",
)

_WARMUP_PREFIX = "warmup:"

#: Posterior draws solved together in the predictive pass. Memory of the pass
#: is this many draws' trajectories, whatever the number of draws.
PREDICTIVE_CHUNK_SIZE = 100


def assemble_inference_data(
    *,
    spec: ModelSpecification,
    data: PreparedData,
    built: BuiltModel,
    samples: dict[str, np.ndarray],
    stats: dict[str, np.ndarray],
    key: jax.Array,
    num_trajectory_draws: int,
    attributes: dict[str, Any],
    save_trajectories: bool = False,
    chunk_size: int = PREDICTIVE_CHUNK_SIZE,
) -> az.InferenceData:
    """Build the InferenceData of one fit.

    Parameters
    ----------
    spec, data, built
        The specification, the subject's prepared arrays and the built model.
    samples
        Latent draws, ``{site: (num_chains, num_draws, ...)}``.
    stats
        Sampler statistics, ``{name: (num_chains, num_draws)}``; names starting
        with ``"warmup:"`` go to ``warmup_sample_stats``.
    key
        Key for the posterior predictive noise.
    num_trajectory_draws
        Draws of every chain, evenly spaced, whose noise-free trajectories of
        the observed variables are kept in ``predictions`` for plots and for
        R-hat on trajectories; 0 keeps none, and no group then has a time
        dimension.
    attributes
        Labels and settings stored on the posterior group.
    save_trajectories
        Keep the trajectories of every state for every draw in ``predictions``
        instead (``chains * draws * sweeps * times * states * 8`` bytes).
    chunk_size
        Draws solved at a time in the predictive pass.
    """
    means, solved, kept = _predictive_pass(
        spec, built, data, samples, num_trajectory_draws, save_trajectories, chunk_size
    )
    observed_data, log_likelihood, predictive = _observation_groups(
        spec, data, samples, means, solved, key
    )
    dims, coords = _dimensions(spec, data, built)

    idata = az.from_dict(
        posterior=samples,
        posterior_predictive=predictive,
        log_likelihood=log_likelihood,
        observed_data=observed_data,
        sample_stats={
            k: v for k, v in stats.items() if not k.startswith(_WARMUP_PREFIX)
        },
        dims=dims,
        coords=coords,
    )
    # Each observed variable has its own observation dimension; with several,
    # their coordinates are named after them, since one Dataset can hold only
    # one coordinate called "time".
    several = len(data.observed) > 1
    for name, variable in data.observed.items():
        observation = f"{name}_observation"
        prefix = f"{name}_" if several else ""
        idata.observed_data = idata.observed_data.assign_coords(
            {
                f"{prefix}sweep": (observation, data.sweeps[variable.sweep_index]),
                f"{prefix}time": (observation, data.times[variable.time_index]),
                f"{prefix}row": (observation, variable.row),
            }
        )
    warmup = {
        k[len(_WARMUP_PREFIX) :]: v
        for k, v in stats.items()
        if k.startswith(_WARMUP_PREFIX)
    }
    if warmup:
        idata.add_groups(warmup_sample_stats=_chain_draw_dataset(warmup))
    if kept is not None:
        idata.add_groups(predictions=_trajectory_dataset(data, *kept))
    idata.posterior.attrs.update(_attributes(spec, data, attributes))
    idata.posterior.attrs["network_input_ranges"] = _network_input_ranges(built)
    return idata


def _network_input_ranges(built: BuiltModel) -> str:
    """``{term: {input: [low, high]}}`` as JSON: the range each network was fitted on.

    Stored so that a network's output can be evaluated over the data's range
    from the fit alone (convergence judged on functions, plots).
    """
    ranges = {
        name: {
            input_name: [float(centre - half), float(centre + half)]
            for input_name, centre, half in zip(
                network.inputs, network.input_centres, network.input_half_widths
            )
        }
        for name, network in built.networks.items()
    }
    return json.dumps(ranges, sort_keys=True)


def pointwise_log_likelihood_at(
    spec: ModelSpecification, data: PreparedData, samples: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Log-likelihood of every finite observation of ``data`` under posterior draws.

    Used to score data a fit did not see (leave-future-out). ``samples`` are
    the latent draws ``{site: (num_chains, num_draws, ...)}`` of a fit of
    ``spec``; returns ``{variable: (num_chains, num_draws, num_observations)}``,
    ``-inf`` where a draw's solve failed.
    """
    built = build_model(spec, data)
    means, solved, _ = _predictive_pass(
        spec, built, data, samples, 0, False, PREDICTIVE_CHUNK_SIZE
    )
    _, log_likelihood, _ = _observation_groups(
        spec, data, samples, means, solved, jax.random.key(0)
    )
    return log_likelihood


def _predictive_pass(
    spec: ModelSpecification,
    built: BuiltModel,
    data: PreparedData,
    samples: dict[str, np.ndarray],
    num_trajectory_draws: int,
    save_trajectories: bool,
    chunk_size: int,
):
    """Solve every draw, a chunk at a time, keeping only what is stored.

    Returns the noise-free values at the observations,
    ``{variable: (chain, draw, observation)}``; whether each draw's solve
    succeeded, ``(chain, draw)``; and the kept draw numbers with their
    trajectories ``{name: (chain, kept draw, sweep, time)}`` (None when no
    draw is kept), an observed variable's in its own
    units (a spike count or rate as its expected value, the link of the latent
    state, so that plots compare like with like).
    Peak memory is one chunk's trajectories plus what is kept.
    """
    shape = next(iter(samples.values())).shape[:2]
    total = shape[0] * shape[1]
    flat = {
        name: value.reshape((total,) + value.shape[2:])
        for name, value in samples.items()
    }
    names = trajectory_names(built.spec, data) if save_trajectories else {}
    names = names or {variable: None for variable in data.observed}
    draws = _kept_draws(shape[1], num_trajectory_draws, save_trajectories)
    keep = (np.arange(shape[0])[:, None] * shape[1] + draws[None, :]).ravel()
    solve_chunk = _chunk_solver(built, tuple(names))

    means = {name: [] for name in data.observed}
    solved, kept = [], {name: [] for name in names}
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        # Pad the last chunk to the chunk size, so one compiled program serves all.
        index = np.minimum(np.arange(start, start + chunk_size), total - 1)
        outputs = solve_chunk({name: value[index] for name, value in flat.items()})
        outputs = {
            name: np.asarray(value)[: stop - start] for name, value in outputs.items()
        }
        for name, variable in data.observed.items():
            trajectory = outputs[f"{name}_trajectory"]
            means[name].append(trajectory[:, variable.sweep_index, variable.time_index])
        solved.append(outputs[SOLVER_SUCCESS_SITE].astype(bool))
        chosen = keep[(keep >= start) & (keep < stop)] - start
        chosen_samples = {site: value[start + chosen] for site, value in flat.items()}
        for name in names:
            trajectory = outputs[f"{name}_trajectory"][chosen]
            if name in data.observed:
                trajectory = expected_observation(
                    spec.observation_model(name), name, chosen_samples, trajectory
                )
            kept[name].append(trajectory)

    means = {
        name: np.concatenate(v).reshape(shape + (-1,)) for name, v in means.items()
    }
    solved = np.concatenate(solved).reshape(shape)
    kept = {
        name: np.concatenate(v).reshape((shape[0], draws.size) + v[0].shape[1:])
        for name, v in kept.items()
    }
    return means, solved, (draws, kept) if draws.size else None


def _kept_draws(num_draws: int, num_kept: int, keep_all: bool) -> np.ndarray:
    """Draw numbers, the same in every chain, whose trajectories are stored."""
    if keep_all:
        return np.arange(num_draws)
    count = min(num_kept, num_draws)
    if not count:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, num_draws - 1, count).astype(int))


def _chunk_solver(built: BuiltModel, names: tuple[str, ...]):
    """A compiled function: a chunk of draws to their trajectories and success flags."""
    sites = {f"{name}_trajectory" for name in names} | {SOLVER_SUCCESS_SITE}
    sites |= {f"{name}_trajectory" for name in built.observed_sites}

    def one_draw(sample):
        model = handlers.seed(handlers.substitute(built.model, data=sample), 0)
        trace = handlers.trace(model).get_trace(observe=False, record_trajectories=True)
        return {site: trace[site]["value"] for site in sites}

    return jax.jit(jax.vmap(one_draw))


def _observation_groups(spec, data, samples, means, solved, key):
    """Observed data, pointwise log-likelihood and posterior predictive draws."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    observed, log_likelihood, predictive = {}, {}, {}
    for name, variable in data.observed.items():
        model = spec.observation_model(name)
        state = means[name]
        # A failed solve has NaN states; give scipy a finite stand-in and mask.
        state = np.where(solved[..., None], state, 0.0)
        pointwise = pointwise_log_likelihood(
            model, name, samples, state, variable.values
        )
        # A draw whose solve failed has no prediction: its likelihood is zero.
        log_likelihood[name] = np.where(solved[..., None], pointwise, -np.inf)
        predictive[name] = np.where(
            solved[..., None],
            predictive_draws(model, name, samples, state, rng),
            np.nan,
        )
        observed[name] = variable.values
    return observed, log_likelihood, predictive


def _dimensions(spec: ModelSpecification, data: PreparedData, built: BuiltModel):
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {"sweep": data.sweeps}
    for name in data.observed:
        dims[name] = [f"{name}_observation"]
    for name in built.latent_sizes:
        if name.endswith("_0") and name[:-2] in built.spec.state_names:
            dims[name] = ["sweep"]
    for name in built.networks:
        dims[f"{name}_weights"] = [f"{name}_weight"]
    return dims, coords


def _chain_draw_dataset(values: dict[str, np.ndarray]) -> xr.Dataset:
    return xr.Dataset(
        {
            name: (("chain", "draw"), np.asarray(value))
            for name, value in values.items()
        },
        coords={
            "chain": np.arange(next(iter(values.values())).shape[0]),
            "draw": np.arange(next(iter(values.values())).shape[1]),
        },
    )


def _trajectory_dataset(data, draws, kept) -> xr.Dataset:
    """Kept trajectories as ``(chain, draw, sweep, time)``.

    Chains are kept apart and ``draw`` holds the posterior draw numbers, so the
    stored trajectories line up with the posterior and R-hat can be computed on
    them (convergence judged on predicted trajectories).
    """
    first = next(iter(kept.values()))
    return xr.Dataset(
        {
            name: (("chain", "draw", "sweep", "time"), values)
            for name, values in kept.items()
        },
        coords={
            "chain": np.arange(first.shape[0]),
            "draw": draws,
            "sweep": data.sweeps,
            "time": data.times,
        },
    )


def _attributes(spec: ModelSpecification, data: PreparedData, attributes: dict) -> dict:
    """Attributes for the posterior group; nested values are stored as JSON."""
    stored = {
        "model_specification": spec.to_json(),
        "solver_settings": json.dumps(spec.solver.as_dict(), sort_keys=True),
        "package_versions": json.dumps(_package_versions(), sort_keys=True),
        "time_units": data.time_units,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    for name, value in attributes.items():
        stored[name] = (
            json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        )
    return stored


def _package_versions() -> dict[str, str]:
    versions = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def save_fit(idata: az.InferenceData, path: str | os.PathLike) -> pathlib.Path:
    """Write a fit to NetCDF atomically: a partial file never has the final name.

    Parameters
    ----------
    idata
        The fit.
    path
        Destination, conventionally ``fits/<subject>__<model>.nc``.
    """
    with atomic_path(path) as temporary:
        idata.to_netcdf(str(temporary))
    return path


def load_fit(path: str | os.PathLike) -> az.InferenceData:
    """Read a fit written by :func:`save_fit`, fully loaded into memory."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No fit at {path}; run the workflow first, or check the path."
        )
    idata = az.from_netcdf(path)
    for group in idata.groups():
        idata[group].load()
    return idata


def specification_of(idata: az.InferenceData) -> ModelSpecification:
    """The model specification a fit was made with."""
    from bayesude.core.specification import specification_from_dict

    description = json.loads(idata.posterior.attrs["model_specification"])
    return specification_from_dict(description, "stored model_specification")
