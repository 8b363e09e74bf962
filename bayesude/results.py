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
import scipy.stats
import xarray as xr
from numpyro.infer import Predictive

from bayesude.core.specification import ModelSpecification
from bayesude.files import atomic_path
from bayesude.inference.model import SOLVER_SUCCESS_SITE, BuiltModel, build_model
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
        Draws per chain whose noise-free trajectories are kept in ``predictions``.
    attributes
        Labels and settings stored on the posterior group.
    """
    trajectories, solved = _trajectories(built, data, samples)
    observed_data, log_likelihood, predictive = _observation_groups(
        spec, data, samples, trajectories, solved, key
    )
    dims, coords = _dimensions(data, built)

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
    for name, variable in data.observed.items():
        observation = f"{name}_observation"
        idata.observed_data = idata.observed_data.assign_coords(
            sweep=(observation, data.sweeps[variable.sweep_index]),
            time=(observation, data.times[variable.time_index]),
        )
    warmup = {
        k[len(_WARMUP_PREFIX) :]: v
        for k, v in stats.items()
        if k.startswith(_WARMUP_PREFIX)
    }
    if warmup:
        idata.add_groups(warmup_sample_stats=_chain_draw_dataset(warmup))
    idata.add_groups(
        predictions=_thinned_trajectories(data, trajectories, num_trajectory_draws)
    )
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
    trajectories, solved = _trajectories(built, data, samples)
    _, log_likelihood, _ = _observation_groups(
        spec, data, samples, trajectories, solved, jax.random.key(0)
    )
    return log_likelihood


def _trajectories(
    built: BuiltModel, data: PreparedData, samples: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Noise-free trajectories, ``{variable: (chain, draw, sweep, time)}``; success."""
    sites = [f"{name}_trajectory" for name in data.observed] + [SOLVER_SUCCESS_SITE]
    num_chains = next(iter(samples.values())).shape[0]
    # One chain at a time bounds memory by one chain's trajectories.
    per_chain = []
    for chain in range(num_chains):
        chain_samples = {name: value[chain] for name, value in samples.items()}
        predictive = Predictive(
            built.model, posterior_samples=chain_samples, return_sites=sites
        )
        outputs = predictive(jax.random.key(0), observe=False, record_trajectories=True)
        per_chain.append({name: np.asarray(value) for name, value in outputs.items()})
    trajectories = {
        name: np.stack([chain[f"{name}_trajectory"] for chain in per_chain])
        for name in data.observed
    }
    solved = np.stack([chain[SOLVER_SUCCESS_SITE] for chain in per_chain]).astype(bool)
    return trajectories, solved


def _observation_groups(spec, data, samples, trajectories, solved, key):
    """Observed data, pointwise log-likelihood and posterior predictive draws."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    observed, log_likelihood, predictive = {}, {}, {}
    for name, variable in data.observed.items():
        mean = trajectories[name][..., variable.sweep_index, variable.time_index]
        sigma = samples[f"sigma_{name}"][..., None]
        if spec.observation == "student_t":
            noise = scipy.stats.t(spec.student_t_df, loc=mean, scale=sigma)
        else:
            noise = scipy.stats.norm(loc=mean, scale=sigma)
        pointwise = noise.logpdf(variable.values)
        # A draw whose solve failed has no prediction: its likelihood is zero.
        log_likelihood[name] = np.where(solved[..., None], pointwise, -np.inf)
        predictive[name] = np.where(
            solved[..., None], noise.rvs(random_state=rng), np.nan
        )
        observed[name] = variable.values
    return observed, log_likelihood, predictive


def _dimensions(data: PreparedData, built: BuiltModel):
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {"sweep": data.sweeps}
    for name in data.observed:
        dims[name] = [f"{name}_observation"]
    for variable in data.observed.values():
        dims[f"{variable.state}_0"] = ["sweep"]
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


def _thinned_trajectories(data, trajectories, num_draws) -> xr.Dataset:
    """Trajectories of ``num_draws`` evenly spaced draws of every chain, for plots.

    Chains are kept apart, and the ``draw`` coordinate holds the posterior draw
    numbers, so the stored trajectories line up with the posterior and R-hat
    can be computed on them (convergence judged on predicted trajectories).
    """
    first = next(iter(trajectories.values()))
    total = first.shape[1]
    chosen = np.unique(np.linspace(0, total - 1, min(num_draws, total)).astype(int))
    variables = {
        name: (("chain", "draw", "sweep", "time"), values[:, chosen])
        for name, values in trajectories.items()
    }
    return xr.Dataset(
        variables,
        coords={
            "chain": np.arange(first.shape[0]),
            "draw": chosen,
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
