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
import xarray as xr
from numpyro.infer import MCMC

from bayesude.core.inputs import evaluate_input
from bayesude.core.neural import Network, build_network
from bayesude.core.solve import solve_at_times
from bayesude.core.specification import ModelSpecification
from bayesude.hierarchical_results import (
    assemble_hierarchical_inference_data,
    subject_view,
    view_model_name,
)
from bayesude.inference.fit import (
    InferenceSettings,
    _initial_parameters,
    _with_adjoint,
)
from bayesude.inference.model import SOLVER_FAILURE_SITE, SOLVER_SUCCESS_SITE, _terms
from bayesude.inference.preflight import resolve_chain_method
from bayesude.inference.solver_failures import FailureCountingNUTS, SolverFailureLog
from bayesude.inference.stacked_data import StackedSubjects, stack_subjects

__all__ = [
    "Pooling",
    "StackedSubjects",
    "build_hierarchical_model",
    "fit_hierarchical",
    "resolve_pooling",
    "stack_subjects",
    "subject_view",
    "view_model_name",
]

logger = logging.getLogger(__name__)

#: Priors a pooled parameter may have, with the map to the pooling scale.
_POOLING_SCALES = {"LogNormal": (jnp.log, jnp.exp), "Normal": (None, None)}


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
        states, success, _failure = solve_at_times(
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
    init
        Only ``"prior"`` (chains start around prior medians); other values are
        replaced by it, with a log message.
    num_chains, num_warmup, num_samples, seed, progress_bar,
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
    if init != "prior":
        # An SVI or MAP start would run the model on a batch of guide draws
        # outside vmap, which the per-subject solve does not support.
        logger.info(
            "Hierarchical fits start NUTS from prior medians; init=%r applies to "
            "independent fits only.",
            init,
        )
        init = "prior"
    if spec.solver.solver == "automatic":
        raise NotImplementedError(
            "solver='automatic' is resolved per subject by bayesude.fit; a "
            "hierarchical fit needs a named solver, e.g. "
            "SolverSettings(solver='Tsit5') or, for a stiff model, 'Kvaerno5'."
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
        chain_method_used=resolve_chain_method(chain_method, num_chains),
        save_trajectories=False,
    )
    key_init, key_warmup, key_predict = jax.random.split(jax.random.key(seed), 3)

    started = time.perf_counter()
    bound_guide = _BoundModel(functools.partial(guide_model, arrays), latent_sizes)
    init_params, init_failures, inverse_mass_matrix = _initial_parameters(
        bound_guide, key_init, settings, None
    )
    if num_chains == 1:
        # NumPyro expects one chain's start without a chain dimension.
        init_params = jax.tree.map(lambda value: value[0], init_params)
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
    return assemble_hierarchical_inference_data(
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
    failure_log = SolverFailureLog(settings.num_chains, settings.chain_method_used)
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
        chain_method=settings.chain_method_used,
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
