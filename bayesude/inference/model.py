"""The NumPyro model of a specification fitted to one subject's data.

Generative story, per subject:

1. mechanistic parameters and every network weight from their priors;
2. initial states per sweep (observed states centred on the first observation);
3. the ODE solved for every sweep at the observation times only;
4. each finite observation from the observation model around its solved state.

A failed or non-finite solve adds ``-inf`` to the log density (a rejected
proposal) instead of raising, and is reported to an optional
:class:`~bayesude.inference.solver_failures.SolverFailureLog`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array

from bayesude.core.inputs import evaluate_input
from bayesude.core.neural import Network, build_network
from bayesude.core.solve import solve_at_times
from bayesude.core.specification import ModelSpecification
from bayesude.inference.observations import observation_distribution
from bayesude.inference.prepared_data import PreparedData
from bayesude.inference.solver_failures import SolverFailureLog, host_callback

#: Name of the factor site that rejects proposals whose solve failed.
SOLVER_FAILURE_SITE = "solver_failure"

#: Prior scale of initial observed states, as a fraction of the variable's range.
_INITIAL_STATE_RELATIVE_SCALE = 0.05

#: Name of the site recording whether a draw's solve succeeded (trajectory runs only).
SOLVER_SUCCESS_SITE = "solver_success"

#: Name of the site recording why a draw's solve failed, a key of
#: :data:`bayesude.core.solve.FAILURE_REASONS` (trajectory runs only).
SOLVER_FAILURE_CODE_SITE = "solver_failure_code"

#: Prior scale, on the log scale, of the initial value of a positive observed state.
_INITIAL_POSITIVE_LOG_SCALE = 0.5


@dataclasses.dataclass(frozen=True)
class BuiltModel:
    """A NumPyro model and what is needed to interpret its samples.

    Attributes
    ----------
    model
        ``model(observe=True, record_trajectories=False, capture=None)``.
        With ``observe=False`` the observations are drawn (posterior
        predictive). ``record_trajectories`` adds deterministic sites with the
        noise-free trajectory of every state, ``(sweep, time)`` each, named
        after the observed variable where a state is observed. A ``capture``
        dict receives the initial-value problem (``vector_field``, ``y0``,
        ``args``, ``t0``, ``t1``) when the model runs outside ``jit``.
    networks
        The neural terms' built networks, by term name.
    observed_sites
        Names of the observation sites (the observed data variables).
    latent_sizes
        Number of values of every latent site, by site name.
    spec
        The specification the model was built from.
    """

    model: Callable[..., None]
    networks: dict[str, Network]
    observed_sites: tuple[str, ...]
    latent_sizes: dict[str, int]
    spec: ModelSpecification


def build_model(
    spec: ModelSpecification,
    data: PreparedData,
    failure_log: SolverFailureLog | None = None,
) -> BuiltModel:
    """Build the NumPyro model of ``spec`` on ``data``.

    Parameters
    ----------
    spec
        The model specification.
    data
        One subject's prepared arrays.
    failure_log
        Receives a flag at every log-density evaluation when given.
    """
    networks = _build_networks(spec, data)
    vector_field = _make_vector_field(spec, data, networks)
    solve_sweeps = _make_solver(spec, data, vector_field)
    state_index = {name: i for i, name in enumerate(spec.state_names)}
    trajectory_sites = trajectory_names(spec, data)
    if failure_log is not None:
        report_failure = host_callback(
            failure_log.record_evaluation, only_when_true=True
        )

    def model(
        observe: bool = True,
        record_trajectories: bool = False,
        capture: dict | None = None,
    ) -> None:
        params = _sample_parameters(spec)
        weights = {
            name: numpyro.sample(
                f"{name}_weights",
                dist.Normal(0.0, jnp.asarray(network.weight_prior_scales)).to_event(1),
            )
            for name, network in networks.items()
        }
        initial_states = _initial_states(spec, data, params, weights, networks)

        if capture is not None:
            capture.update(
                solve_sweeps.problem(initial_states, params, weights),
            )
        states, solved, failure = solve_sweeps(initial_states, params, weights)
        numpyro.factor(SOLVER_FAILURE_SITE, jnp.where(solved, 0.0, -jnp.inf))
        if failure_log is not None:
            report_failure(~solved)
        if record_trajectories:
            numpyro.deterministic(SOLVER_SUCCESS_SITE, solved)
            numpyro.deterministic(SOLVER_FAILURE_CODE_SITE, failure)
            for name, index in trajectory_sites.items():
                numpyro.deterministic(f"{name}_trajectory", states[:, :, index])

        for variable in data.observed.values():
            trajectory = states[:, :, state_index[variable.state]]
            predicted = trajectory[variable.sweep_index, variable.time_index]
            observation_model = spec.observation_model(variable.name)
            noise = observation_distribution(
                observation_model,
                variable.name,
                predicted,
                _data_scale(observation_model, variable.values),
            )
            numpyro.sample(
                variable.name,
                noise,
                obs=jnp.asarray(variable.values) if observe else None,
            )

    return BuiltModel(
        model=model,
        networks=networks,
        observed_sites=tuple(data.observed),
        latent_sizes=_latent_sizes(spec, data, networks),
        spec=spec,
    )


def _data_scale(observation_model, values: np.ndarray) -> float:
    """Spread of the observations, the default scale of their noise prior.

    Log-normal noise acts on the log scale, so its spread is that of the
    logarithm of the positive observations.
    """
    if observation_model.family == "lognormal":
        return float(np.std(np.log(values[values > 0]))) or 1.0
    return float(np.std(values)) or 1.0


def trajectory_names(spec: ModelSpecification, data: PreparedData) -> dict[str, int]:
    """Name of each state's trajectory site (observed variable or state), to index."""
    observed = {v.state: v.name for v in data.observed.values()}
    return {observed.get(name, name): i for i, name in enumerate(spec.state_names)}


def _latent_sizes(spec, data, networks) -> dict[str, int]:
    sizes = {p.name: 1 for p in spec.free_parameters()}
    sizes.update({name: 1 for name in spec.stimulus_parameters()})
    sizes.update({f"{name}_weights": n.num_weights for name, n in networks.items()})
    for state in _initial_state_parameters(spec, data):
        sizes[f"{state}_0"] = data.num_sweeps
    for name in data.observed:
        sizes.update(
            {site: 1 for site in spec.observation_model(name).parameter_sites(name)}
        )
    return sizes


def _directly_observed(spec, data) -> list:
    """Observed variables that measure their state itself, not a rate of it.

    Only these say what their state's initial value and range are; a spike
    count says nothing direct about the latent activity behind it.
    """
    return [
        variable
        for variable in data.observed.values()
        if not spec.observation_model(variable.name).maps_state
    ]


def _initial_state_parameters(spec, data) -> list[str]:
    """States whose initial values are parameters: directly observed or with a prior."""
    observed = {v.state for v in _directly_observed(spec, data)}
    return [
        state
        for state in spec.state_names
        if state not in spec.initial_state
        and (state in observed or f"{state}_0" in spec.priors)
    ]


def _sample_parameters(spec: ModelSpecification) -> dict[str, Array]:
    params = {
        p.name: numpyro.sample(p.name, p.prior.to_numpyro())
        for p in spec.free_parameters()
    }
    params.update(
        {
            name: numpyro.sample(name, spec.priors[name].to_numpyro())
            for name in spec.stimulus_parameters()
        }
    )
    params.update({name: jnp.asarray(value) for name, value in spec.fixed.items()})
    return params


def _build_networks(spec: ModelSpecification, data: PreparedData) -> dict[str, Network]:
    mapped = {
        v.state
        for v in data.observed.values()
        if spec.observation_model(v.name).maps_state
    }
    data_ranges = {
        name: value
        for name, value in data.variable_ranges().items()
        if name not in mapped
    }
    networks = {}
    for term in spec.neural_terms:
        inputs = spec.network_inputs(term)
        ranges = {**data_ranges, **dict(term.input_ranges)}
        missing = [name for name in inputs if name not in ranges]
        if missing:
            raise ValueError(
                f"Neural term {term.name!r} reads {missing}, whose range cannot be "
                f"read "
                f"from the data (not observed); give it in the term's input_ranges, "
                f"e.g. input_ranges: {{{missing[0]}: [LOW, HIGH]}}."
            )
        networks[term.name] = build_network(term, inputs, ranges)
    return networks


def _terms(spec, params, weights, networks) -> dict[str, Callable[..., Array]]:
    """Replaceable terms: mechanistic by default, networks where replaced."""
    model = spec.model
    terms = model.default_terms(params) if model is not None else {}
    for term in spec.neural_terms:
        if term.replaces is not None:
            network, term_weights = networks[term.name], weights[term.name]
            terms[term.replaces] = _scalar_network(network, term_weights)
    return terms


def _scalar_network(network: Network, weights: Array) -> Callable[..., Array]:
    def term(*values: Array) -> Array:
        return network(weights, *values)[0]

    return term


def _make_vector_field(spec, data, networks):
    """Vector field of all sweeps, ``y`` of shape ``(num_sweeps, num_states)``.

    Sweeps are solved as one system rather than one solve per sweep: they share
    the protocol's timing, so the step-size controller picks steps that suit
    all of them, and one loop of solver steps costs far less than a batch of
    loops (JAX's per-step overhead dominates these small systems).
    """
    model = spec.model
    state_names = spec.state_names
    additive_terms = [t for t in spec.neural_terms if t.adds_to]
    times = jnp.asarray(data.times)
    interpolation = spec.input_interpolation

    def sweep_vector_field(t, y, params, weights, sweep_inputs):
        state = {name: y[i] for i, name in enumerate(state_names)}
        inputs = {
            name: evaluate_input(times, values, t, interpolation)
            for name, values in sweep_inputs.items()
        }
        for stimulus in spec.stimuli:
            inputs[stimulus.input] = inputs.get(stimulus.input, 0.0) + stimulus.value(
                t, params
            )
        terms = _terms(spec, params, weights, networks)
        if model is not None:
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
        params, weights, inputs = args
        return jax.vmap(sweep_vector_field, in_axes=(None, 0, None, None, 0))(
            t, y, params, weights, inputs
        )

    return vector_field


def _make_solver(spec, data, vector_field):
    """``solve(y0, params, weights) -> (states (sweep, time, state), success, code)``.

    The function's ``problem`` attribute returns the initial-value problem
    instead of solving it, for pre-flight checks.
    """
    times = jnp.asarray(data.times)
    inputs = {
        name: jnp.asarray(sampled.values) for name, sampled in data.inputs.items()
    }
    jump_times = data.jump_times()
    jump_times = jump_times[
        (jump_times > data.times[0]) & (jump_times < data.times[-1])
    ]

    def all_jump_times(params):
        # Stimulus onsets may be parameters: traced jump times keep the solution
        # (and its gradient) right across a step that moves.
        moving = [stimulus.jump_times(params) for stimulus in spec.stimuli]
        if not moving:
            return jump_times
        return jnp.concatenate([jnp.asarray(jump_times, dtype=float), *moving])

    def solve(y0, params, weights):
        solution = solve_at_times(
            vector_field,
            y0,
            times,
            (params, weights, inputs),
            spec.solver,
            all_jump_times(params),
        )
        return jnp.swapaxes(solution.states, 0, 1), solution.success, solution.failure

    def problem(y0, params, weights):
        return {
            "vector_field": vector_field,
            "y0": y0,
            "args": (params, weights, inputs),
            "t0": float(data.times[0]),
            "t1": float(data.times[-1]),
        }

    solve.problem = problem
    return solve


def _initial_states(spec, data, params, weights, networks) -> Array:
    """Initial state of every sweep, shape ``(num_sweeps, num_states)``."""
    num_sweeps = data.num_sweeps
    observed_initial = {
        state: numpyro.sample(
            f"{state}_0",
            _initial_state_prior(spec, data, state).to_event(1),
        )
        for state in _initial_state_parameters(spec, data)
    }
    fixed = {
        name: jnp.full((num_sweeps,), float(value))
        for name, value in spec.initial_state.items()
    }
    known = {**observed_initial, **fixed}

    model = spec.model
    missing = [name for name in spec.state_names if name not in known]
    if missing and model is not None:
        terms = _terms(spec, params, weights, networks)
        if known:
            derived = jax.vmap(
                lambda observed: model.initial_unobserved_state(observed, params, terms)
            )({name: known[name] for name in known})
        else:
            # Only spike counts or rates observed: every sweep starts alike.
            derived = {
                name: jnp.broadcast_to(value, (num_sweeps,))
                for name, value in model.initial_unobserved_state(
                    {}, params, terms
                ).items()
            }
        known.update(
            {name: value for name, value in derived.items() if name in missing}
        )
    missing = [name for name in spec.state_names if name not in known]
    if missing:
        raise ValueError(
            f"The initial value of state(s) {missing} is unknown: they are not "
            f"observed and the model gives no rule for them. Set them in the "
            f"specification's initial_state, e.g. initial_state: {{{missing[0]}: 0.0}}."
        )
    return jnp.stack([known[name] for name in spec.state_names], axis=-1)


def _initial_state_prior(spec, data, state) -> dist.Distribution:
    """Prior of one state's initial values, batch shape ``(num_sweeps,)``.

    A prior given as ``<state>_0`` in the specification applies to every sweep.
    Otherwise the state is observed and the prior is centred on each sweep's
    first observation, on the log scale for a positive state so that its
    initial value is sampled where it can live.
    """
    given = spec.priors.get(f"{state}_0")
    if given is not None:
        return given.to_numpyro().expand([data.num_sweeps])
    variable = next(v for v in _directly_observed(spec, data) if v.state == state)
    first = jnp.asarray(variable.first_values)
    constraint = spec.state_constraint(state)
    if constraint == "positive":
        return dist.LogNormal(
            jnp.log(jnp.maximum(first, 1e-12)), _INITIAL_POSITIVE_LOG_SCALE
        )
    if constraint == "unit_interval":
        return dist.Uniform(jnp.zeros_like(first), 1.0)
    low, high = variable.value_range
    scale = max(_INITIAL_STATE_RELATIVE_SCALE * (high - low), 1e-6)
    return dist.Normal(first, scale)
