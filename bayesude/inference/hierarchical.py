r"""Hierarchical fits: one NumPyro model over all subjects, partially pooled.

Every pooled mechanistic parameter :math:`\theta` has a population mean
:math:`\mu` and spread :math:`s` on its natural scale (the log of a parameter
with a LogNormal prior, the parameter itself for a Normal prior), and subject
:math:`i` draws

.. math::

    g(\theta_i) = \mu + s\, z_i, \quad z_i \sim \mathcal{N}(0, 1)
    \quad\text{(non-centred, the default)},

or :math:`g(\theta_i) \sim \mathcal{N}(\mu, s)` (centred). With few
observations per subject the centred form has a funnel that NUTS cannot
cross without divergences; the non-centred form removes it. The population
mean's prior is the parameter's own prior location and scale; the spread's
is HalfNormal. Neural terms are shared by all subjects (one set of weights, a
"population UDE") while mechanistic parameters stay subject-level.

All subjects are solved by one vmapped solve inside one compiled program,
their arrays passed as model arguments. Subjects differ in length and number
of sweeps: shorter ones are padded (last time repeated, first sweep copied),
but the likelihood gathers only real observations, as flat vectors, so
padding never enters it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy.stats
import xarray as xr
from numpyro.infer import MCMC, Predictive

from bayesude.core.inputs import evaluate_input
from bayesude.core.neural import Network, build_network
from bayesude.core.solve import solve_at_times
from bayesude.core.specification import ModelSpecification
from bayesude.inference.fit import (
    InferenceSettings,
    _initial_parameters,
    _with_adjoint,
)
from bayesude.inference.model import SOLVER_FAILURE_SITE, SOLVER_SUCCESS_SITE, _terms
from bayesude.inference.prepared_data import PreparedData, prepare_data
from bayesude.inference.solver_failures import FailureCountingNUTS, SolverFailureLog
from bayesude.recordings import select_subject
from bayesude.results import _attributes, _chain_draw_dataset

logger = logging.getLogger(__name__)

#: Priors a pooled parameter may have, with the map to the pooling scale.
_POOLING_SCALES = {"LogNormal": (jnp.log, jnp.exp), "Normal": (None, None)}

#: Prior scale of initial observed states, as a fraction of the variable's range.
_INITIAL_STATE_RELATIVE_SCALE = 0.05

#: Suffix of the model name under which per-subject views are reported.
VIEW_SUFFIX = "_hierarchical"


@dataclasses.dataclass(frozen=True)
class Pooling:
    """How subjects share parameters.

    Parameters
    ----------
    pooled
        Mechanistic parameters drawn from a population distribution.
    centered
        Centred instead of non-centred parameterisation.
    spread_prior_scale
        HalfNormal scale of each pooled parameter's spread, by name.
    shared_noise
        One noise scale per observed variable for all subjects, instead of
        one per subject.
    """

    pooled: tuple[str, ...]
    centered: bool
    spread_prior_scale: dict[str, float]
    shared_noise: bool


@dataclasses.dataclass(frozen=True)
class StackedSubjects:
    """All subjects' arrays, padded to common shapes where padding is harmless.

    Shapes use S subjects, W sweeps (the most of any subject), T times (the
    most of any subject) and J jump times (the most of any subject).

    Attributes
    ----------
    subjects
        Subject names, length S.
    prepared
        Each subject's :class:`PreparedData` (unpadded), for labels.
    arrays
        Model arguments: ``times`` (S, T), ``inputs`` {name: (S, W, T)},
        ``jump_times`` (S, J), ``first_values`` {state: (S, W)}, and per
        observed variable ``<name>:values``, ``:subject_index``,
        ``:sweep_index``, ``:time_index`` (N,) and ``:noise_scale`` (S,).
    real_sweeps
        Subject and sweep slot of every real sweep, two arrays of shape (R,).
    time_offset
        1 when a start time was prepended to every subject's times, else 0.
    """

    subjects: tuple[str, ...]
    prepared: tuple[PreparedData, ...]
    arrays: dict
    real_sweeps: tuple[np.ndarray, np.ndarray]
    time_offset: int

    @property
    def num_subjects(self) -> int:
        return len(self.subjects)


def stack_subjects(
    spec: ModelSpecification, data: xr.Dataset, t0: float | None = None
) -> StackedSubjects:
    """Prepare every subject of ``data`` and stack them for one vmapped solve.

    Parameters
    ----------
    spec
        The model specification.
    data
        Recordings, dims ``(subject, sweep, time)`` (``docs/conventions.md``).
    t0
        Start of every solve in model time units, where ``initial_state``
        applies; None starts each subject at its first observation.
    """
    subjects = tuple(str(s) for s in data["subject"].values)
    prepared = tuple(prepare_data(spec, select_subject(data, s), s) for s in subjects)
    offset = 0 if t0 is None else 1
    for subject, p in zip(subjects, prepared, strict=True):
        if t0 is not None and not t0 < p.times[0]:
            raise ValueError(
                f"Subject {subject!r}: t0={t0} must come before the first "
                f"observation at {p.times[0]} {p.time_units}; lower t0 or leave it "
                f"out to start at the first observation."
            )
    num_sweeps = max(p.num_sweeps for p in prepared)
    num_times = max(p.times.size for p in prepared) + offset

    times = np.stack([_padded_times(p.times, t0, num_times) for p in prepared])
    inputs = {
        name: np.stack(
            [_padded_input(p, name, offset, num_sweeps, num_times) for p in prepared]
        )
        for name in spec.model_inputs
    }
    arrays = {
        "times": times,
        "inputs": inputs,
        "jump_times": _padded_jump_times(prepared, times),
        "first_values": _first_values(prepared, num_sweeps),
    }
    for name in spec.observed:
        arrays.update(_stacked_observations(prepared, name, offset))
    real_subjects = np.concatenate(
        [np.full(p.num_sweeps, i) for i, p in enumerate(prepared)]
    )
    real_slots = np.concatenate([np.arange(p.num_sweeps) for p in prepared])
    return StackedSubjects(
        subjects, prepared, arrays, (real_subjects, real_slots), offset
    )


def _padded_times(times, t0, length) -> np.ndarray:
    if t0 is not None:
        times = np.concatenate([[t0], times])
    # Repeating the last time adds save points but no solver steps.
    return np.concatenate([times, np.full(length - times.size, times[-1])])


def _padded_input(p: PreparedData, name, offset, num_sweeps, num_times) -> np.ndarray:
    values = p.inputs[name].values
    if offset:
        values = np.concatenate([values[:, :1], values], axis=1)
    values = np.pad(values, ((0, 0), (0, num_times - values.shape[1])), mode="edge")
    return np.concatenate(
        [values, np.repeat(values[:1], num_sweeps - values.shape[0], axis=0)]
    )


def _padded_jump_times(prepared, times) -> np.ndarray:
    """Each subject's interior jump times, padded with its end time (a no-op)."""
    jumps = [
        j[(j > t[0]) & (j < t[-1])]
        for j, t in zip((p.jump_times() for p in prepared), times, strict=True)
    ]
    width = max(j.size for j in jumps)
    return np.stack(
        [
            np.concatenate([j, np.full(width - j.size, t[-1])])
            for j, t in zip(jumps, times, strict=True)
        ]
    ).reshape(len(prepared), width)


def _first_values(prepared, num_sweeps) -> dict[str, np.ndarray]:
    states = {v.state: v.name for v in prepared[0].observed.values()}
    return {
        state: np.stack(
            [
                np.pad(
                    p.observed[name].first_values,
                    (0, num_sweeps - p.num_sweeps),
                    mode="edge",
                )
                for p in prepared
            ]
        )
        for state, name in states.items()
    }


def _stacked_observations(prepared, name, offset) -> dict[str, np.ndarray]:
    variables = [p.observed[name] for p in prepared]
    return {
        f"{name}:values": np.concatenate([v.values for v in variables]),
        f"{name}:subject_index": np.concatenate(
            [np.full(v.values.size, i) for i, v in enumerate(variables)]
        ),
        f"{name}:sweep_index": np.concatenate([v.sweep_index for v in variables]),
        f"{name}:time_index": np.concatenate([v.time_index for v in variables])
        + offset,
        f"{name}:noise_scale": np.array(
            [float(np.std(v.values)) or 1.0 for v in variables]
        ),
        f"{name}:initial_scale": np.array(
            [
                max(_INITIAL_STATE_RELATIVE_SCALE * np.ptp(v.values), 1e-6)
                for v in variables
            ]
        ),
    }


def resolve_pooling(
    spec: ModelSpecification,
    pooled: Sequence[str] | None = None,
    centered: bool = False,
    spread_prior_scale: dict[str, float] | None = None,
    shared_noise: bool = False,
) -> Pooling:
    """Check the pooling settings against ``spec`` and fill in the defaults.

    Raises
    ------
    ValueError
        A pooled name is not a free parameter of the model.
    NotImplementedError
        A pooled parameter's prior is neither Normal nor LogNormal.
    """
    free = {p.name: p for p in spec.free_parameters()}
    names = tuple(free) if pooled is None else tuple(pooled)
    spread_prior_scale = dict(spread_prior_scale or {})
    for name in list(names) + list(spread_prior_scale):
        if name not in free:
            raise ValueError(
                f"hierarchical.pooled: {name!r} is not a free parameter of "
                f"{spec.mechanistic}; choose from {', '.join(free)}."
            )
    scales = {}
    for name in names:
        prior = spec.priors.get(name, free[name].prior)
        if prior.distribution not in _POOLING_SCALES:
            raise NotImplementedError(
                f"Parameter {name!r} has a {prior.distribution} prior; pooling is "
                f"implemented for Normal and LogNormal priors. Give it one of those "
                f"or leave it out of hierarchical.pooled."
            )
        scales[name] = spread_prior_scale.get(
            name, 0.5 * dict(prior.arguments)["scale"]
        )
    return Pooling(names, centered, scales, shared_noise)


def build_hierarchical_model(
    spec: ModelSpecification,
    stacked: StackedSubjects,
    pooling: Pooling,
    failure_log: SolverFailureLog | None = None,
):
    """The NumPyro model over all subjects, and its shared networks.

    Returns
    -------
    model
        ``model(arrays, observe=True, record_trajectories=False)`` with
        ``arrays`` = ``stacked.arrays`` (passed as an argument so subjects of
        the same shapes share one compiled program).
    networks
        The shared neural terms, by name.
    """
    if spec.solver.adjoint == "automatic":
        # Reverse mode supports every use; fit_hierarchical picks forward mode
        # for NUTS when it is cheaper.
        spec = _with_adjoint(spec, "recursive_checkpoint")
    networks = _shared_networks(spec, stacked)
    solve_all = jax.vmap(_subject_solver(spec, networks), in_axes=(0, 0, None, 0, 0, 0))
    state_index = {name: i for i, name in enumerate(spec.state_names)}
    num_subjects = stacked.num_subjects
    real_subjects, real_slots = (jnp.asarray(a) for a in stacked.real_sweeps)

    def model(arrays, observe=True, record_trajectories=False):
        params = _subject_parameters(spec, pooling, num_subjects)
        weights = {
            name: numpyro.sample(
                f"{name}_weights",
                dist.Normal(0.0, jnp.asarray(n.weight_prior_scales)).to_event(1),
            )
            for name, n in networks.items()
        }
        y0 = _initial_states(
            spec, arrays, params, weights, networks, real_subjects, real_slots
        )
        states, solved = solve_all(
            y0, params, weights, arrays["times"], arrays["inputs"], arrays["jump_times"]
        )
        all_solved = jnp.all(solved)
        numpyro.factor(SOLVER_FAILURE_SITE, jnp.where(all_solved, 0.0, -jnp.inf))
        if failure_log is not None:
            jax.debug.callback(failure_log.record_evaluation, ~all_solved, ordered=True)
        if record_trajectories:
            numpyro.deterministic(SOLVER_SUCCESS_SITE, solved)
        for name, state in spec.observed.items():
            trajectory = states[..., state_index[state]]
            if record_trajectories:
                numpyro.deterministic(f"{name}_trajectory", trajectory)
            subject = arrays[f"{name}:subject_index"]
            predicted = trajectory[
                subject, arrays[f"{name}:sweep_index"], arrays[f"{name}:time_index"]
            ]
            sigma = _noise_scale(name, arrays, pooling, num_subjects)[subject]
            numpyro.sample(
                name,
                _observation_distribution(spec, predicted, sigma),
                obs=arrays[f"{name}:values"] if observe else None,
            )

    return model, networks


def _shared_networks(spec, stacked) -> dict[str, Network]:
    """Networks whose input scaling spans every subject's data range."""
    ranges: dict[str, tuple[float, float]] = {}
    for p in stacked.prepared:
        for name, (low, high) in p.variable_ranges().items():
            old_low, old_high = ranges.get(name, (low, high))
            ranges[name] = (min(low, old_low), max(high, old_high))
    networks = {}
    for term in spec.neural_terms:
        inputs = spec.network_inputs(term)
        term_ranges = {**ranges, **dict(term.input_ranges)}
        missing = [name for name in inputs if name not in term_ranges]
        if missing:
            raise ValueError(
                f"Neural term {term.name!r} reads {missing}, whose range cannot be "
                f"read from the data (not observed); give it in the term's "
                f"input_ranges, e.g. input_ranges: {{{missing[0]}: [LOW, HIGH]}}."
            )
        networks[term.name] = build_network(term, inputs, term_ranges)
    return networks


def _subject_solver(spec, networks):
    """``solve(y0 (W, n), params, weights, times (T,), inputs, jumps)``.

    Returns states ``(W, T, n)`` and success. Every data array is an argument,
    so the function can be vmapped over subjects.
    """
    model = spec.model
    state_names = spec.state_names
    additive_terms = [t for t in spec.neural_terms if t.adds_to]
    interpolation = spec.input_interpolation

    def sweep_vector_field(t, y, params, weights, times, sweep_inputs):
        state = {name: y[i] for i, name in enumerate(state_names)}
        inputs = {
            name: evaluate_input(times, values, t, interpolation)
            for name, values in sweep_inputs.items()
        }
        if model is not None:
            terms = _terms(spec, params, weights, networks)
            derivatives = model.vector_field(t, state, params, inputs, terms)
        else:
            derivatives = {name: jnp.zeros_like(y[0]) for name in state_names}
        readable = {**state, **inputs}
        for term in additive_terms:
            network = networks[term.name]
            outputs = network(
                weights[term.name], *(readable[n] for n in network.inputs)
            )
            for index, name in enumerate(term.adds_to):
                derivatives[name] = derivatives[name] + outputs[index]
        return jnp.stack([derivatives[name] for name in state_names])

    def vector_field(t, y, args):
        params, weights, times, inputs = args
        return jax.vmap(sweep_vector_field, in_axes=(None, 0, None, None, None, 0))(
            t, y, params, weights, times, inputs
        )

    def solve(y0, params, weights, times, inputs, jump_times):
        states, success = solve_at_times(
            vector_field,
            y0,
            times,
            (params, weights, times, inputs),
            spec.solver,
            jump_times,
        )
        return jnp.swapaxes(states, 0, 1), success

    return solve


def _subject_parameters(spec, pooling: Pooling, num_subjects) -> dict:
    """Every mechanistic parameter per subject, shape ``(S,)``."""
    params = {}
    for parameter in spec.free_parameters():
        name = parameter.name
        prior = spec.priors.get(name, parameter.prior)
        if name not in pooling.pooled:
            with numpyro.plate("subject", num_subjects):
                params[name] = numpyro.sample(name, prior.to_numpyro())
            continue
        to_pooling_scale, from_pooling_scale = _POOLING_SCALES[prior.distribution]
        arguments = dict(prior.arguments)
        mean = numpyro.sample(
            f"{name}_population_mean", dist.Normal(arguments["loc"], arguments["scale"])
        )
        spread = numpyro.sample(
            f"{name}_population_spread",
            dist.HalfNormal(pooling.spread_prior_scale[name]),
        )
        with numpyro.plate("subject", num_subjects):
            if pooling.centered:
                location = numpyro.sample(f"{name}_location", dist.Normal(mean, spread))
            else:
                offset = numpyro.sample(f"{name}_offset", dist.Normal(0.0, 1.0))
                location = mean + spread * offset
            value = (
                location if from_pooling_scale is None else from_pooling_scale(location)
            )
            params[name] = numpyro.deterministic(name, value)
    for name, value in spec.fixed.items():
        params[name] = jnp.full((num_subjects,), float(value))
    return params


def _initial_states(spec, arrays, params, weights, networks, real_subjects, real_slots):
    """Initial states ``(S, W, n)``; one latent value per real sweep only."""
    num_subjects, num_sweeps = next(iter(arrays["first_values"].values())).shape
    known = {}
    for name, state in spec.observed.items():
        if state in spec.initial_state:
            continue
        first = arrays["first_values"][state]
        scale = arrays[f"{name}:initial_scale"][real_subjects]
        sampled = numpyro.sample(
            f"{state}_0",
            dist.Normal(first[real_subjects, real_slots], scale).to_event(1),
        )
        known[state] = first.at[real_subjects, real_slots].set(sampled)
    for name, value in spec.initial_state.items():
        known[name] = jnp.full((num_subjects, num_sweeps), float(value))

    missing = [name for name in spec.state_names if name not in known]
    if missing and spec.model is not None:

        def derive(observed, subject_params):
            terms = _terms(spec, subject_params, weights, networks)
            return spec.model.initial_unobserved_state(observed, subject_params, terms)

        derived = jax.vmap(jax.vmap(derive, in_axes=(0, None)), in_axes=(0, 0))(
            known, params
        )
        known.update({n: v for n, v in derived.items() if n in missing})
    missing = [name for name in spec.state_names if name not in known]
    if missing:
        raise ValueError(
            f"The initial value of state(s) {missing} is unknown: they are not "
            f"observed and the model gives no rule for them. Set them in the "
            f"specification's initial_state, e.g. initial_state: {{{missing[0]}: 0.0}}."
        )
    return jnp.stack([known[name] for name in spec.state_names], axis=-1)


def _noise_scale(name, arrays, pooling, num_subjects):
    scales = arrays[f"{name}:noise_scale"]
    if pooling.shared_noise:
        sigma = numpyro.sample(f"sigma_{name}", dist.HalfNormal(jnp.max(scales)))
        return jnp.full((num_subjects,), sigma)
    with numpyro.plate("subject", num_subjects):
        return numpyro.sample(f"sigma_{name}", dist.HalfNormal(scales))


def _observation_distribution(spec, predicted, sigma):
    if spec.observation == "student_t":
        return dist.StudentT(spec.student_t_df, predicted, sigma)
    return dist.Normal(predicted, sigma)


def fit_hierarchical(
    spec: ModelSpecification,
    data: xr.Dataset,
    *,
    pooled: Sequence[str] | None = None,
    centered: bool = False,
    spread_prior_scale: dict[str, float] | None = None,
    shared_noise: bool = False,
    t0: float | None = None,
    method: str = "nuts",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    progress_bar: bool = True,
    init: str = "prior",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    chain_method: str = "vectorized",
    svi_steps: int = 2000,
    svi_learning_rate: float = 0.01,
    num_trajectory_draws: int = 100,
    model_name: str | None = None,
) -> az.InferenceData:
    """Fit ``spec`` to all subjects of ``data`` at once, partially pooled.

    Parameters
    ----------
    spec
        The model specification; its priors become the population means'
        priors for pooled parameters.
    data
        Recordings, dims ``(subject, sweep, time)``; subjects may differ in
        length and sweeps (NaN where a subject has no sample).
    pooled, centered, spread_prior_scale, shared_noise
        See :class:`Pooling`; ``pooled=None`` pools every free mechanistic
        parameter, and the spread's HalfNormal scale defaults to half the
        parameter's prior scale.
    t0
        Time (model units) at which every solve starts and ``initial_state``
        applies; None starts each subject at its first observation.
    method
        Only ``"nuts"``.
    num_chains, num_warmup, num_samples, seed, progress_bar, init,
    target_accept_prob, max_tree_depth, dense_mass, chain_method, svi_steps,
    svi_learning_rate, num_trajectory_draws
        As in :func:`bayesude.fit`.
    model_name
        Label stored with the result.

    Returns
    -------
    arviz.InferenceData
        Laid out as an independent fit (``docs/conventions.md``) with a
        ``subject`` dimension on subject-level parameters, ``subject_sweep``
        on initial states, population parameters ``<p>_population_mean`` and
        ``<p>_population_spread``, and ``subject``, ``sweep`` and ``time``
        coordinates on every observation, so the log-likelihood of one
        subject is ``log_likelihood[name].groupby("subject").sum()``.
    """
    if method != "nuts":
        raise NotImplementedError(
            f"Hierarchical fits run NUTS only, got method={method!r}; use method: "
            f"nuts, or fit the subjects independently with {method}."
        )
    stacked = stack_subjects(spec, data, t0)
    pooling = resolve_pooling(spec, pooled, centered, spread_prior_scale, shared_noise)
    arrays = jax.tree.map(jnp.asarray, stacked.arrays)
    reverse_spec = _with_adjoint(spec, "recursive_checkpoint")
    guide_model, _ = build_hierarchical_model(reverse_spec, stacked, pooling)
    latent_sizes = _latent_sizes(guide_model, arrays)
    spec = _with_adjoint(
        spec, spec.solver.resolved(sum(latent_sizes.values()), True).adjoint
    )
    settings = InferenceSettings(
        method=method,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        init=init,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        chain_method=chain_method,
        svi_steps=svi_steps,
        svi_learning_rate=svi_learning_rate,
    )
    key_init, key_warmup, key_predict = jax.random.split(jax.random.key(seed), 3)

    started = time.perf_counter()
    bound_guide = _BoundModel(functools.partial(guide_model, arrays), latent_sizes)
    init_params, init_failures, inverse_mass_matrix = _initial_parameters(
        bound_guide, key_init, settings, None
    )
    samples, stats = _run_nuts(
        spec,
        stacked,
        pooling,
        arrays,
        settings,
        key_warmup,
        init_params,
        inverse_mass_matrix,
        progress_bar,
    )
    stats["warmup:solver_failure"][:, 0] += init_failures
    wall_time = time.perf_counter() - started
    logger.info(
        "Fitted %s hierarchically to %d subjects in %.1f s.",
        model_name or "model",
        stacked.num_subjects,
        wall_time,
    )

    plain_model, _ = build_hierarchical_model(spec, stacked, pooling)
    return _inference_data(
        spec,
        stacked,
        pooling,
        plain_model,
        arrays,
        samples,
        stats,
        key_predict,
        num_trajectory_draws,
        {
            "subject": "all subjects",
            "subjects": json.dumps(list(stacked.subjects)),
            "model_name": model_name or (spec.mechanistic or "neural"),
            "seed": seed,
            "wall_time_s": wall_time,
            "inference_settings": dataclasses.asdict(settings),
            "hierarchical_settings": {
                "pooled": list(pooling.pooled),
                "centered": pooling.centered,
                "spread_prior_scale": pooling.spread_prior_scale,
                "shared_noise": pooling.shared_noise,
                "t0": t0,
            },
        },
    )


@dataclasses.dataclass(frozen=True)
class _BoundModel:
    """A model with its data bound, as :func:`_initial_parameters` expects."""

    model: object
    latent_sizes: dict[str, int]


def _latent_sizes(model, arrays) -> dict[str, int]:
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(arrays)
    return {
        name: int(np.size(site["value"]))
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _run_nuts(
    spec,
    stacked,
    pooling,
    arrays,
    settings,
    key,
    init_params,
    inverse_mass_matrix,
    progress_bar,
):
    failure_log = SolverFailureLog(settings.num_chains, settings.chain_method)
    model, _ = build_hierarchical_model(spec, stacked, pooling, failure_log)
    kernel = FailureCountingNUTS(
        model,
        failure_log,
        target_accept_prob=settings.target_accept_prob,
        max_tree_depth=settings.max_tree_depth,
        dense_mass=settings.dense_mass,
        forward_mode_differentiation=spec.solver.adjoint == "forward",
        inverse_mass_matrix=inverse_mass_matrix,
    )
    # Data enter as arguments, not constants: fits of the same shapes share
    # one compiled program (and the persistent compilation cache).
    mcmc = MCMC(
        kernel,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        num_chains=settings.num_chains,
        chain_method=settings.chain_method,
        progress_bar=progress_bar,
        jit_model_args=True,
    )
    failure_log.start_phase(settings.num_warmup)
    mcmc.warmup(
        key,
        arrays,
        init_params=init_params,
        extra_fields=("diverging",),
        collect_warmup=True,
    )
    warmup_failures = failure_log.stop()
    warmup_diverging = np.asarray(
        mcmc.get_extra_fields(group_by_chain=True)["diverging"]
    )

    failure_log.start_phase(settings.num_samples)
    extra_fields = (
        "diverging",
        "num_steps",
        "energy",
        "potential_energy",
        "accept_prob",
        "adapt_state.step_size",
    )
    mcmc.run(mcmc.post_warmup_state.rng_key, arrays, extra_fields=extra_fields)
    sampling_failures = failure_log.stop()

    samples = {
        k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()
    }
    extra = mcmc.get_extra_fields(group_by_chain=True)
    num_steps = np.asarray(extra["num_steps"])
    stats = {
        "diverging": np.asarray(extra["diverging"]),
        "n_steps": num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(num_steps, 1))).astype(int),
        "energy": np.asarray(extra["energy"]),
        "lp": -np.asarray(extra["potential_energy"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
        "solver_failure": sampling_failures,
        "warmup:diverging": warmup_diverging,
        "warmup:solver_failure": warmup_failures,
    }
    return samples, stats


def _inference_data(
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
