"""Encoding and decoding: stimulus → latent dynamics → spikes, and back.

An encoding fit (a library model whose input is the stimulus, observed through
a spike-count observation model) gives a posterior over how a stimulus becomes
spikes. :func:`decode_stimulus` inverts it: for each of several posterior
draws of the encoding parameters it finds the posterior of the stimulus given
held-out spike counts (a Gaussian variational fit over the stimulus samples
under a Gaussian prior taken from the training stimulus), and mixes them, so
the decoded envelope's uncertainty includes the encoding model's.
:func:`ridge_decoder` is the linear baseline: ridge regression of the stimulus
on lagged spike counts.
"""

from __future__ import annotations

import dataclasses
import pathlib

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import xarray as xr
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from sklearn.linear_model import RidgeCV

from bayesude.core.observations import mapped_mean
from bayesude.core.simulate import simulate
from bayesude.core.specification import ModelSpecification

_SECONDS_TO_MS = 1e3


def load_spike_counts_with_stimulus(
    path: str | pathlib.Path,
    recording: int,
    window_s: tuple[float, float],
    bin_s: float = 0.005,
) -> xr.Dataset:
    """Binned spike counts and the binned stimulus envelope of one recording.

    Parameters
    ----------
    path
        A NetCDF file with ``stimulus (recording, time)``, ``spike_time
        (spike)`` in s and ``spike_recording (spike)``, e.g.
        ``data/spike_trains/locust_auditory_receptor_nitime.nc``.
    recording
        The recording's label in the ``recording`` coordinate.
    window_s
        ``(start, end)`` in s.
    bin_s
        Bin width in s.

    Returns
    -------
    xarray.Dataset
        ``spike_count (sweep=1, time)`` (role observed, units "count") and
        ``stimulus (sweep=1, time)`` (role input, the envelope averaged over
        each bin, in the file's units); ``time`` is the bin start, in s.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No spike-train file at {path}; check the path.")
    with xr.open_dataset(path) as source:
        missing = {"stimulus", "spike_time", "spike_recording"} - set(source)
        if missing:
            raise ValueError(
                f"{path}: expected variables stimulus, spike_time and "
                f"spike_recording; {sorted(missing)} are missing."
            )
        if recording not in source["recording"].values:
            raise ValueError(
                f"{path}: no recording {recording!r}; the file has "
                f"{source['recording'].values.tolist()}."
            )
        stimulus = source["stimulus"].sel(recording=recording)
        edges = np.arange(window_s[0], window_s[1] + 1e-12, bin_s)
        times = stimulus["time"].values
        which = np.digitize(times, edges) - 1
        inside = (which >= 0) & (which < edges.size - 1)
        envelope = np.bincount(
            which[inside],
            weights=stimulus.values[inside].astype(float),
            minlength=edges.size - 1,
        ) / np.maximum(np.bincount(which[inside], minlength=edges.size - 1), 1)
        # spike_recording holds the recording's position (0, 1), although its
        # long_name says "1 or 2": 929 spikes are at position 0, as documented
        # for recording 1.
        position = int(np.flatnonzero(source["recording"].values == recording)[0])
        spikes = source["spike_time"].values[
            source["spike_recording"].values == position
        ]
        counts, _ = np.histogram(spikes, bins=edges)
        units = source["stimulus"].attrs.get("units", "V")
        attributes = {k: source.attrs.get(k, "") for k in ("source", "license")}
    return xr.Dataset(
        {
            "spike_count": (
                ("sweep", "time"),
                counts[None].astype(float),
                {"units": "count", "role": "observed"},
            ),
            "stimulus": (
                ("sweep", "time"),
                envelope[None],
                {"units": units, "role": "input"},
            ),
        },
        coords={"sweep": [0], "time": ("time", edges[:-1], {"units": "s"})},
        attrs={
            **attributes,
            "source_file": path.name,
            "recording": recording,
            "bin_s": bin_s,
        },
    )


def load_spike_subjects(
    loader: str, subjects: dict[str, dict]
) -> dict[str, xr.Dataset]:
    """Each subject's data through a spike-count loader, for workflow files.

    Parameters
    ----------
    loader
        ``"population_counts"`` (:func:`bayesude.population.load_population_counts`)
        or ``"spike_counts_with_stimulus"`` (:func:`load_spike_counts_with_stimulus`).
    subjects
        ``{subject: {"file": path, "window_s": ..., "bin_s": ..., "recording": ...}}``.
    """
    from bayesude.population import load_population_counts

    loaded = {}
    for subject, entry in subjects.items():
        options = {k: entry[k] for k in ("window_s", "bin_s") if k in entry}
        if loader == "population_counts":
            loaded[subject] = load_population_counts(entry["file"], **options)
            continue
        if "recording" not in entry or "window_s" not in entry:
            raise ValueError(
                f"data.subjects.{subject}: the spike_counts_with_stimulus loader "
                f"needs 'recording' and 'window_s' (e.g. recording: 1, "
                f"window_s: [0, 8])."
            )
        loaded[subject] = load_spike_counts_with_stimulus(
            entry["file"], entry["recording"], **options
        )
    return loaded


@dataclasses.dataclass(frozen=True)
class DecodedStimulus:
    """A decoded stimulus with its uncertainty.

    Attributes
    ----------
    times
        Bin times, shape ``(num_times,)``, in the data's units.
    mean, lower, upper
        Posterior mean and the central interval's bounds, ``(num_times,)``.
    samples
        Posterior draws of the stimulus, ``(num_samples, num_times)``.
    """

    times: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    samples: np.ndarray


def decode_stimulus(
    spec: ModelSpecification,
    idata: az.InferenceData,
    held_out: xr.Dataset,
    *,
    stimulus_prior: tuple[float, float],
    counts: str = "spike_count",
    knot_spacing: int = 1,
    num_encoding_draws: int = 8,
    num_samples_per_draw: int = 50,
    svi_steps: int = 1500,
    learning_rate: float = 0.05,
    interval: float = 0.9,
    seed: int = 0,
) -> DecodedStimulus:
    """Posterior of the stimulus behind held-out spike counts.

    Parameters
    ----------
    spec, idata
        The encoding model and its fit; ``spec`` has one model input (the
        stimulus) and observes ``counts`` through a count observation model.
    held_out
        Spike counts ``(sweep=1, time)`` not used in the fit; its ``stimulus``
        (if present) is ignored.
    stimulus_prior
        ``(mean, standard deviation)`` of the stimulus in each bin, in the
        stimulus' units, e.g. those of the training stimulus.
    knot_spacing
        The stimulus is decoded at every ``knot_spacing``-th bin and linearly
        interpolated between; a spacing near the stimulus' correlation time
        keeps the decoder from chasing detail the spikes cannot resolve.
    num_encoding_draws
        Posterior draws of the encoding parameters to decode under; their
        decoded posteriors are mixed with equal weight.
    num_samples_per_draw
        Stimulus draws kept from each decoded posterior.
    svi_steps, learning_rate
        Adam steps and step size of each variational fit.
    interval
        Mass of the central interval in ``lower``/``upper``.
    seed
        Seed of the variational fits and of the draws.
    """
    model = spec.model
    if model is None or len(model.inputs) != 1:
        raise ValueError(
            "decode_stimulus needs a mechanistic encoding model with exactly one "
            f"input (the stimulus); {spec.mechanistic} has {model and model.inputs}."
        )
    observation = spec.observation_model(counts)
    if not observation.maps_state or observation.family == "rate":
        raise ValueError(
            f"decode_stimulus decodes from spike counts; give {counts!r} a poisson "
            f"or negative_binomial observation model."
        )
    times_ms = _model_times(held_out, spec)
    observed = np.asarray(held_out[counts].values[0], dtype=float)
    draws = _encoding_draws(spec, idata, num_encoding_draws)
    log_likelihood = _count_log_likelihood(spec, counts, times_ms, observed)
    prior_mean, prior_sd = stimulus_prior

    samples = []
    keys = jax.random.split(jax.random.key(seed), len(draws))
    for key, draw in zip(keys, draws):
        samples.append(
            _decode_one_draw(
                log_likelihood,
                draw,
                times_ms.size,
                knot_spacing,
                prior_mean,
                prior_sd,
                key,
                svi_steps,
                learning_rate,
                num_samples_per_draw,
            )
        )
    samples = np.concatenate(samples)
    tail = (1.0 - interval) / 2.0
    lower, upper = np.quantile(samples, [tail, 1.0 - tail], axis=0)
    return DecodedStimulus(
        times=np.asarray(held_out["time"].values),
        mean=samples.mean(axis=0),
        lower=lower,
        upper=upper,
        samples=samples,
    )


def _model_times(data: xr.Dataset, spec: ModelSpecification) -> np.ndarray:
    times = np.asarray(data["time"].values, dtype=float)
    units = data["time"].attrs.get("units", "")
    if spec.time_units == "ms" and units == "s":
        times = times * _SECONDS_TO_MS
    return times - times[0]


def _encoding_draws(spec, idata, num_draws) -> list[dict[str, float]]:
    stacked = idata.posterior.stack(sample=("chain", "draw"))
    total = stacked.sizes["sample"]
    chosen = np.linspace(0, total - 1, min(num_draws, total)).astype(int)
    names = [p.name for p in spec.free_parameters()]
    names += [n for n in stacked.data_vars if n.split("_")[0] in _OBSERVATION_SITES]
    return [
        {
            **{name: float(stacked[name].values[i]) for name in names},
            **spec.fixed,
        }
        for i in chosen
    ]


_OBSERVATION_SITES = ("gain", "offset", "concentration")


def _count_log_likelihood(spec, counts, times_ms, observed):
    """``f(stimulus, draw) -> log p(counts | stimulus, draw)`` in JAX."""
    model = spec.model
    observation = spec.observation_model(counts)
    state = spec.observed[counts]
    (input_name,) = model.inputs
    settings = dataclasses.replace(spec.solver, adjoint="recursive_checkpoint")
    observed = jnp.asarray(observed)

    def log_likelihood(stimulus, draw):
        params = {p: draw[p] for p in draw if not p.startswith(_OBSERVATION_SITES)}
        terms = model.default_terms(params)
        y0 = model.initial_unobserved_state({}, params, terms)
        states, success = simulate(
            model,
            params,
            y0,
            times_ms,
            {input_name: stimulus},
            settings,
            spec.input_interpolation,
        )
        mean = mapped_mean(
            observation, states[state], draw[f"gain_{counts}"], draw[f"offset_{counts}"]
        )
        if observation.family == "poisson":
            law = dist.Poisson(mean)
        else:
            law = dist.NegativeBinomial2(mean, draw[f"concentration_{counts}"])
        return jnp.where(success, law.log_prob(observed).sum(), -jnp.inf)

    return log_likelihood


def _decode_one_draw(
    log_likelihood,
    draw,
    num_times,
    knot_spacing,
    prior_mean,
    prior_sd,
    key,
    svi_steps,
    learning_rate,
    num_samples,
) -> np.ndarray:
    draw = {k: jnp.asarray(v) for k, v in draw.items()}
    bins = jnp.arange(num_times, dtype=float)
    knots = jnp.arange(0, num_times + knot_spacing - 1, knot_spacing, dtype=float)

    def model():
        values = numpyro.sample(
            "stimulus_knots",
            dist.Normal(prior_mean, prior_sd).expand([knots.size]).to_event(1),
        )
        stimulus = jnp.interp(bins, knots, values)
        numpyro.deterministic("stimulus", stimulus)
        numpyro.factor("spikes", log_likelihood(stimulus, draw))

    guide = AutoNormal(
        model,
        init_loc_fn=numpyro.infer.init_to_value(
            values={"stimulus_knots": jnp.full(knots.size, prior_mean)}
        ),
        init_scale=0.1 * prior_sd,
    )
    svi = SVI(model, guide, optax.adam(learning_rate), Trace_ELBO())
    fit_key, sample_key = jax.random.split(key)
    result = svi.run(fit_key, svi_steps, progress_bar=False)
    draws = guide.sample_posterior(
        sample_key, result.params, sample_shape=(num_samples,)
    )
    return np.asarray(
        jax.vmap(lambda v: jnp.interp(bins, knots, v))(draws["stimulus_knots"])
    )


@dataclasses.dataclass(frozen=True)
class RidgeDecoding:
    """Linear decoder's held-out prediction and its chosen regularisation."""

    prediction: np.ndarray
    alpha: float
    lags: int


def _lagged(counts: np.ndarray, lags: int) -> np.ndarray:
    """Counts at lags ``-lags..+lags`` bins as columns, zero-padded at the edges."""
    padded = np.pad(counts, lags)
    return np.stack(
        [padded[lags + k : lags + k + counts.size] for k in range(-lags, lags + 1)],
        axis=1,
    )


def ridge_decoder(
    train_counts: np.ndarray,
    train_stimulus: np.ndarray,
    test_counts: np.ndarray,
    lags: int = 10,
) -> RidgeDecoding:
    """Ridge regression of the stimulus on spike counts at lags -lags to +lags bins.

    The regularisation is chosen by leave-one-out cross-validation on the
    training data (scikit-learn's ``RidgeCV``) over a log grid.
    """
    features = _lagged(np.asarray(train_counts, dtype=float), lags)
    regression = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit(features, train_stimulus)
    prediction = regression.predict(_lagged(np.asarray(test_counts, float), lags))
    return RidgeDecoding(prediction, float(regression.alpha_), lags)


def decoding_accuracy(
    truth: np.ndarray,
    estimate: np.ndarray,
    *,
    samples: np.ndarray | None = None,
    block: int = 40,
    num_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy of a decoded stimulus, with uncertainty.

    Parameters
    ----------
    truth, estimate
        The true and decoded stimulus, ``(num_times,)``.
    samples
        Posterior draws of the decoded stimulus ``(num_samples, num_times)``,
        for a Bayesian decoder: adds the posterior interval of the correlation
        and the coverage of the central 90% band.
    block
        Length in bins of the blocks of the moving-block bootstrap (keeps the
        stimulus' autocorrelation inside each block).
    num_bootstrap
        Bootstrap resamples.

    Returns
    -------
    dict
        ``correlation``, ``r2`` (1 - residual/total variance) and ``rmse`` of
        ``estimate``; ``correlation_low``/``_high``: 90% block-bootstrap
        interval over held-out time; with ``samples``, also
        ``correlation_posterior_low``/``_high`` and ``coverage_90``.
    """
    truth, estimate = np.asarray(truth, float), np.asarray(estimate, float)
    rng = np.random.default_rng(seed)
    num_blocks = max(1, truth.size // block)
    starts = rng.integers(0, truth.size - block + 1, size=(num_bootstrap, num_blocks))
    index = (starts[..., None] + np.arange(block)).reshape(num_bootstrap, -1)
    boot = np.array([_correlation(truth[i], estimate[i]) for i in index])
    result = {
        "correlation": _correlation(truth, estimate),
        "r2": 1.0 - np.mean((truth - estimate) ** 2) / np.var(truth),
        "rmse": float(np.sqrt(np.mean((truth - estimate) ** 2))),
        "correlation_low": float(np.quantile(boot, 0.05)),
        "correlation_high": float(np.quantile(boot, 0.95)),
    }
    if samples is not None:
        per_sample = np.array([_correlation(truth, s) for s in samples])
        low, high = np.quantile(samples, [0.05, 0.95], axis=0)
        result.update(
            correlation_posterior_low=float(np.quantile(per_sample, 0.05)),
            correlation_posterior_high=float(np.quantile(per_sample, 0.95)),
            coverage_90=float(np.mean((truth >= low) & (truth <= high))),
        )
    return {k: float(v) for k, v in result.items()}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])
