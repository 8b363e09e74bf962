"""InferenceData of a hierarchical fit, and each subject's part of it.

The layout follows ``docs/conventions.md`` (section on hierarchical fits):
subject-level parameters gain a ``subject`` dimension and every observation
carries ``subject``, ``sweep`` and ``time`` coordinates. :func:`subject_view`
cuts one subject's part out, laid out exactly as an independent fit.
"""

from __future__ import annotations

import dataclasses

import arviz as az
import jax
import numpy as np
import scipy.stats
import xarray as xr
from numpyro.infer import Predictive

from bayesude.inference.model import SOLVER_SUCCESS_SITE
from bayesude.results import _attributes, _chain_draw_dataset

#: Suffix of the model name under which per-subject views are reported.
VIEW_SUFFIX = "_hierarchical"


def assemble_hierarchical_inference_data(
    spec,
    stacked,
    pooling,
    model,
    arrays,
    samples,
    stats,
    key,
    num_trajectory_draws,
    attributes,
) -> az.InferenceData:
    trajectories, solved = _trajectories(model, spec, arrays, samples)
    observed, log_likelihood, predictive = _observation_groups(
        spec, pooling, stacked, samples, trajectories, solved, key
    )
    posterior = az.from_dict(
        posterior=samples,
        dims=_posterior_dims(spec, pooling, samples),
        coords={"subject": list(stacked.subjects)},
    ).posterior
    real_subjects, real_slots = stacked.real_sweeps
    if "subject_sweep" in posterior.dims:
        posterior = posterior.assign_coords(
            sweep_subject=(
                "subject_sweep",
                np.asarray(stacked.subjects)[real_subjects],
            ),
            sweep=("subject_sweep", _sweep_labels(stacked)),
        )
    idata = az.from_dict(
        posterior_predictive=predictive,
        log_likelihood=log_likelihood,
        observed_data=observed,
        sample_stats={k: v for k, v in stats.items() if not k.startswith("warmup:")},
        dims={name: [f"{name}_observation"] for name in spec.observed},
    )
    idata.add_groups(posterior=posterior)
    for name in spec.observed:
        coords = _observation_coords(stacked, name)
        for group in ("observed_data", "log_likelihood", "posterior_predictive"):
            setattr(idata, group, getattr(idata, group).assign_coords(coords))
    idata.add_groups(
        warmup_sample_stats=_chain_draw_dataset(
            {
                k[len("warmup:") :]: v
                for k, v in stats.items()
                if k.startswith("warmup:")
            }
        ),
        predictions=_thinned_trajectories(stacked, trajectories, num_trajectory_draws),
    )
    time_units = stacked.prepared[0].time_units
    idata.posterior.attrs.update(_attributes(spec, _TimeUnits(time_units), attributes))
    return idata


@dataclasses.dataclass(frozen=True)
class _TimeUnits:
    time_units: str


def _trajectories(model, spec, arrays, samples):
    """Noise-free trajectories ``{name: (chain, draw, S, W, T)}`` and success."""
    sites = [f"{name}_trajectory" for name in spec.observed] + [SOLVER_SUCCESS_SITE]
    num_chains = next(iter(samples.values())).shape[0]
    per_chain = []
    for chain in range(num_chains):
        predictive = Predictive(
            model,
            posterior_samples={k: v[chain] for k, v in samples.items()},
            return_sites=sites,
        )
        outputs = predictive(
            jax.random.key(0), arrays, observe=False, record_trajectories=True
        )
        per_chain.append({k: np.asarray(v) for k, v in outputs.items()})
    trajectories = {
        name: np.stack([c[f"{name}_trajectory"] for c in per_chain])
        for name in spec.observed
    }
    solved = np.stack([c[SOLVER_SUCCESS_SITE] for c in per_chain]).astype(bool)
    return trajectories, solved


def _observation_groups(spec, pooling, stacked, samples, trajectories, solved, key):
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    arrays = stacked.arrays
    observed, log_likelihood, predictive = {}, {}, {}
    for name in spec.observed:
        subject = arrays[f"{name}:subject_index"]
        mean = trajectories[name][
            ..., subject, arrays[f"{name}:sweep_index"], arrays[f"{name}:time_index"]
        ]
        sigma = samples[f"sigma_{name}"]
        sigma = sigma[..., None] if pooling.shared_noise else sigma[..., subject]
        if spec.observation == "student_t":
            noise = scipy.stats.t(spec.student_t_df, loc=mean, scale=sigma)
        else:
            noise = scipy.stats.norm(loc=mean, scale=sigma)
        values = arrays[f"{name}:values"]
        ok = solved[..., subject]
        log_likelihood[name] = np.where(ok, noise.logpdf(values), -np.inf)
        predictive[name] = np.where(ok, noise.rvs(random_state=rng), np.nan)
        observed[name] = values
    return observed, log_likelihood, predictive


def _posterior_dims(spec, pooling, samples) -> dict[str, list[str]]:
    dims = {}
    for parameter in spec.free_parameters():
        for name in (
            parameter.name,
            f"{parameter.name}_offset",
            f"{parameter.name}_location",
        ):
            dims[name] = ["subject"]
    if not pooling.shared_noise:
        dims.update({f"sigma_{name}": ["subject"] for name in spec.observed})
    dims.update({f"{state}_0": ["subject_sweep"] for state in spec.observed.values()})
    dims.update({f"{t.name}_weights": [f"{t.name}_weight"] for t in spec.neural_terms})
    return {name: d for name, d in dims.items() if name in samples}


def _sweep_labels(stacked) -> np.ndarray:
    return np.concatenate([p.sweeps for p in stacked.prepared])


def _observation_coords(stacked, name):
    arrays = stacked.arrays
    subject = arrays[f"{name}:subject_index"]
    slot = arrays[f"{name}:sweep_index"]
    time_index = arrays[f"{name}:time_index"]
    dim = f"{name}_observation"
    return {
        "subject": (dim, np.asarray(stacked.subjects)[subject]),
        "sweep": (
            dim,
            np.array(
                [
                    stacked.prepared[s].sweeps[w]
                    for s, w in zip(subject, slot, strict=True)
                ]
            ),
        ),
        "time": (dim, arrays["times"][subject, time_index]),
    }


def _thinned_trajectories(stacked, trajectories, num_draws) -> xr.Dataset:
    """Trajectories on the union of subjects' times and sweeps, NaN where absent."""
    times = np.unique(np.concatenate([p.times for p in stacked.prepared]))
    sweeps = np.unique(_sweep_labels(stacked))
    first = next(iter(trajectories.values()))
    total = first.shape[0] * first.shape[1]
    chosen = np.unique(np.linspace(0, total - 1, min(num_draws, total)).astype(int))
    variables = {}
    for name, values in trajectories.items():
        flat = values.reshape((total,) + values.shape[2:])[chosen]
        grid = np.full(
            (chosen.size, len(stacked.subjects), sweeps.size, times.size), np.nan
        )
        for s, p in enumerate(stacked.prepared):
            rows = np.searchsorted(sweeps, p.sweeps)
            columns = np.searchsorted(times, p.times)
            own = flat[
                :,
                s,
                : p.num_sweeps,
                stacked.time_offset : stacked.time_offset + p.times.size,
            ]
            grid[:, s][:, rows[:, None], columns[None, :]] = own
        variables[name] = (("chain", "draw", "subject", "sweep", "time"), grid[None])
    return xr.Dataset(
        variables,
        coords={
            "chain": [0],
            "draw": np.arange(chosen.size),
            "subject": list(stacked.subjects),
            "sweep": sweeps,
            "time": times,
        },
    )


def view_model_name(model_name: str) -> str:
    """Model name under which a hierarchical fit's per-subject views are reported."""
    return f"{model_name}{VIEW_SUFFIX}"


def subject_view(idata: az.InferenceData, subject: str) -> az.InferenceData:
    """One subject's part of a hierarchical fit, laid out as an independent fit.

    The posterior keeps the population parameters and this subject's own;
    observations, log-likelihood and predictions are this subject's only, so
    PSIS-LOO of the view is comparable with an independent fit of the subject
    on the same observations. Sampler statistics are the joint fit's.
    """
    posterior = idata.posterior
    variables = {}
    for name, variable in posterior.data_vars.items():
        if "subject" in variable.dims:
            variable = variable.sel(subject=subject, drop=True)
        elif "subject_sweep" in variable.dims:
            mine = np.flatnonzero(posterior["sweep_subject"].values == subject)
            labels = posterior["sweep"].values[mine]
            variable = (
                variable.isel(subject_sweep=mine)
                .drop_vars(["sweep_subject", "sweep"])
                .rename(subject_sweep="sweep")
                .assign_coords(sweep=labels)
            )
        variables[name] = variable
    view_posterior = xr.Dataset(variables, attrs=dict(posterior.attrs))
    view_posterior.attrs.update(
        subject=subject, model_name=view_model_name(posterior.attrs["model_name"])
    )
    groups = {"posterior": view_posterior}
    for group in ("observed_data", "log_likelihood", "posterior_predictive"):
        dataset = idata[group]
        for name in dataset.data_vars:
            dim = f"{name}_observation"
            mine = np.flatnonzero(dataset["subject"].values == subject)
            dataset = dataset.isel({dim: mine})
        groups[group] = dataset.drop_vars("subject")
    for group in ("sample_stats", "warmup_sample_stats"):
        groups[group] = idata[group]
    groups["predictions"] = (
        idata.predictions.sel(subject=subject, drop=True)
        .dropna("sweep", how="all")
        .dropna("time", how="all")
    )
    return az.InferenceData(**groups)
