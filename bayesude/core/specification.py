"""One specification for the whole spectrum of models, from mechanistic to fully neural.

A :class:`ModelSpecification` names a mechanistic model from the library (or
none), the neural terms placed inside it, which states are observed and how, the
priors that differ from the defaults, and the solver. It is plain, serialisable
data: the same object is read from a workflow file, used to build the NumPyro
model, and stored in every fit's attributes.

- Purely mechanistic: ``mechanistic="passive_membrane"`` and no neural terms.
- Mechanistic plus a neural term: a term that ``replaces`` a named term of the
  model (``slow_activation``), or ``adds_to`` chosen states.
- Fully neural: ``mechanistic=None``, ``states=("x", "y")`` and a neural term
  that adds to every state.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bayesude.core.inputs import StepStimulus
from bayesude.core.mechanistic import MechanisticModel, Parameter
from bayesude.core.neural import NeuralTerm
from bayesude.core.observations import ObservationModel, observation_model_from_dict
from bayesude.core.priors import Prior, prior_from_dict, support_within
from bayesude.core.solve import SolverSettings
from bayesude.models import mechanistic_model

OBSERVATION_MODELS = ("gaussian", "student_t", "lognormal")


@dataclasses.dataclass(frozen=True)
class ModelSpecification:
    """Everything that defines a model, apart from the data it is fitted to.

    Parameters
    ----------
    mechanistic
        Name of a library model (see :data:`bayesude.models.MODEL_LIBRARY`), or
        None for a fully neural model.
    observed
        ``{data variable: state}``: which state each observed data variable
        measures, e.g. ``{"voltage": "V"}``.
    neural_terms
        Networks placed inside the vector field.
    states
        State names of a fully neural model (taken from the mechanistic model
        otherwise).
    inputs
        ``{model input: data variable}`` for time-varying inputs, e.g.
        ``{"current": "current"}``. Defaults to the data variable of the same
        name as each model input.
    priors
        Priors that replace the mechanistic model's defaults, by parameter name.
        A prior named ``<state>_0`` makes that state's initial value (per
        sweep) a parameter with this prior; its support must lie within the
        state's constraint (positive populations, gates in [0, 1]).
        Parameters of stimuli need a prior here (or a value in ``fixed``).
    fixed
        Parameters held at a known value instead of given a prior.
    initial_state
        Fixed initial values by state name. Observed states without one get a
        per-sweep initial-value parameter centred on the first observation;
        unobserved states without one use the model's own rule (often the
        steady state).
    observation
        ``"gaussian"``, ``"student_t"`` or ``"lognormal"`` (multiplicative,
        for positive states) noise, with one scale per observed variable.
    noise_prior_scale
        Scale of the HalfNormal prior on each noise standard deviation, in
        units of the observed variable; None uses the standard deviation of
        that variable's data.
    student_t_df
        Degrees of freedom of Student-t noise.
    observations
        ``{data variable: ObservationModel}`` for variables observed otherwise
        than by ``observation`` (spike counts, population rates); see
        :mod:`bayesude.core.observations`.
    input_interpolation
        ``"previous"`` (held steps, with jump times) or ``"linear"``.
    solver
        Solver settings.
    stimuli
        Step inputs whose timing or size may be parameters (see
        :class:`~bayesude.core.inputs.StepStimulus`).
    """

    mechanistic: str | None
    observed: dict[str, str]
    neural_terms: tuple[NeuralTerm, ...] = ()
    states: tuple[str, ...] = ()
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    priors: dict[str, Prior] = dataclasses.field(default_factory=dict)
    fixed: dict[str, float] = dataclasses.field(default_factory=dict)
    initial_state: dict[str, float] = dataclasses.field(default_factory=dict)
    observation: str = "gaussian"
    noise_prior_scale: float | None = None
    student_t_df: float = 4.0
    observations: dict[str, ObservationModel] = dataclasses.field(default_factory=dict)
    input_interpolation: str = "previous"
    solver: SolverSettings = SolverSettings()
    stimuli: tuple[StepStimulus, ...] = ()

    def __post_init__(self) -> None:
        self._check_structure()
        self._check_names()

    @property
    def model(self) -> MechanisticModel | None:
        """The mechanistic model object, or None for a fully neural model."""
        return None if self.mechanistic is None else mechanistic_model(self.mechanistic)

    @property
    def state_names(self) -> tuple[str, ...]:
        model = self.model
        return model.states if model is not None else self.states

    @property
    def model_inputs(self) -> tuple[str, ...]:
        model = self.model
        return model.inputs if model is not None else ()

    @property
    def time_units(self) -> str | None:
        model = self.model
        return model.time_units if model is not None else None

    @property
    def replaced_terms(self) -> dict[str, NeuralTerm]:
        return {t.replaces: t for t in self.neural_terms if t.replaces is not None}

    def observation_model(self, variable: str) -> ObservationModel:
        """The observation model of one observed data variable."""
        if variable in self.observations:
            return self.observations[variable]
        return ObservationModel(
            family=self.observation,
            noise_prior_scale=self.noise_prior_scale,
            student_t_df=self.student_t_df,
        )

    def free_parameters(self) -> tuple[Parameter, ...]:
        """Mechanistic parameters that get a prior, in the model's order.

        Parameters used only by a replaced term leave the model, and fixed
        parameters are not sampled.
        """
        model = self.model
        if model is None:
            return ()
        dropped = {
            name
            for term_name in self.replaced_terms
            for name in model.replaceable_term(term_name).parameters
        }
        return tuple(
            dataclasses.replace(p, prior=self.priors.get(p.name, p.prior))
            for p in model.parameters
            if p.name not in dropped and p.name not in self.fixed
        )

    def stimulus_parameters(self) -> tuple[str, ...]:
        """Names of stimulus parameters that get a prior, without repeats."""
        names = (n for stimulus in self.stimuli for n in stimulus.parameter_names())
        return tuple(dict.fromkeys(n for n in names if n not in self.fixed))

    def state_constraint(self, state: str) -> str | None:
        """``"positive"``, ``"unit_interval"`` or None for an unconstrained state."""
        model = self.model
        return model.state_constraints.get(state) if model is not None else None

    def network_inputs(self, term: NeuralTerm) -> tuple[str, ...]:
        """The names a neural term reads, defaulting to a replaced term's arguments."""
        if term.inputs:
            return term.inputs
        if term.replaces is not None:
            return self.model.replaceable_term(term.replaces).arguments
        return self.state_names

    def as_dict(self) -> dict[str, Any]:
        """Plain data describing this specification (JSON-serialisable)."""
        return {
            "mechanistic": self.mechanistic,
            "observed": dict(self.observed),
            "neural_terms": [_neural_term_as_dict(t) for t in self.neural_terms],
            "states": list(self.states),
            "inputs": dict(self.inputs),
            "priors": {name: p.as_dict() for name, p in self.priors.items()},
            "fixed": dict(self.fixed),
            "initial_state": dict(self.initial_state),
            "observation": self.observation,
            "noise_prior_scale": self.noise_prior_scale,
            "student_t_df": self.student_t_df,
            "observations": {
                name: model.as_dict() for name, model in self.observations.items()
            },
            "input_interpolation": self.input_interpolation,
            "solver": self.solver.as_dict(),
            "stimuli": [stimulus.as_dict() for stimulus in self.stimuli],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def _check_structure(self) -> None:
        if self.mechanistic is None and not self.states:
            raise ValueError(
                "A fully neural model (mechanistic: null) must name its states, "
                "e.g. states: [x, y]."
            )
        if self.mechanistic is None and not any(t.adds_to for t in self.neural_terms):
            raise ValueError(
                "A fully neural model needs a neural term with adds_to naming its "
                "states; without one its vector field is zero."
            )
        if self.observation not in OBSERVATION_MODELS:
            raise ValueError(
                f"Unknown observation model {self.observation!r}; use one of "
                f"{', '.join(OBSERVATION_MODELS)}."
            )
        if not self.observed:
            raise ValueError(
                "A model specification must observe at least one state, e.g. "
                "observed: {voltage: V}."
            )
        for variable in self.observations:
            if variable not in self.observed:
                raise ValueError(
                    f"observations: {variable!r} is not an observed data variable; "
                    f"name one of {sorted(self.observed)} or add it to observed."
                )

    def _check_names(self) -> None:
        model = self.model
        states = set(self.state_names)
        for variable, state in self.observed.items():
            if state not in states:
                raise ValueError(
                    f"observed: data variable {variable!r} is mapped to state "
                    f"{state!r}, but the model's states are {sorted(states)}."
                )
        for name in self.initial_state:
            if name not in states:
                raise ValueError(
                    f"initial_state: {name!r} is not a state of the model; its "
                    f"states are {sorted(states)}."
                )
        parameter_names = {p.name for p in model.parameters} if model else set()
        stimulus_names = {n for s in self.stimuli for n in s.parameter_names()}
        initial_names = {f"{state}_0" for state in states}
        known = parameter_names | stimulus_names | initial_names
        for name in list(self.priors) + list(self.fixed):
            if name not in known:
                raise ValueError(
                    f"priors/fixed: {name!r} is not a parameter of "
                    f"{self.mechanistic}; its parameters are {sorted(known)}."
                )
        self._check_stimuli(stimulus_names)
        self._check_initial_state_supports(initial_names)
        readable = states | set(self.model_inputs)
        for term in self.neural_terms:
            if term.replaces is not None:
                if model is None:
                    raise ValueError(
                        f"Neural term {term.name!r} replaces {term.replaces!r}, but a "
                        f"fully neural model has no terms to replace; use adds_to."
                    )
                signature = model.replaceable_term(term.replaces)
                if term.inputs and len(term.inputs) != len(signature.arguments):
                    raise ValueError(
                        f"Neural term {term.name!r} replaces {term.replaces!r}, "
                        f"which takes {len(signature.arguments)} argument(s) "
                        f"{signature.arguments}; inputs lists {len(term.inputs)}."
                    )
            for name in term.adds_to:
                if name not in states:
                    raise ValueError(
                        f"Neural term {term.name!r} adds to {name!r}, which is not a "
                        f"state; the states are {sorted(states)}."
                    )
            for name in term.inputs:
                if name not in readable:
                    raise ValueError(
                        f"Neural term {term.name!r} reads {name!r}, which is neither "
                        f"a state nor an input of the model ({sorted(readable)})."
                    )

    def _check_stimuli(self, stimulus_names: set[str]) -> None:
        for stimulus in self.stimuli:
            if stimulus.input not in self.model_inputs:
                raise ValueError(
                    f"stimuli: {stimulus.input!r} is not an input of "
                    f"{self.mechanistic}; its inputs are {list(self.model_inputs)}."
                )
        missing = sorted(stimulus_names - set(self.priors) - set(self.fixed))
        if missing:
            raise ValueError(
                f"stimuli: the stimulus parameter(s) {missing} need a prior, e.g. "
                f"priors: {{{missing[0]}: {{distribution: Uniform, low: 5.0, "
                f"high: 40.0}}}}, or a value in fixed."
            )

    def _check_initial_state_supports(self, initial_names: set[str]) -> None:
        for name in sorted(initial_names & set(self.priors)):
            state = name[: -len("_0")]
            constraint = self.state_constraint(state)
            if constraint is None:
                continue
            prior = self.priors[name]
            if not support_within(prior, constraint):
                raise ValueError(
                    f"priors: the prior of {name} ({prior.as_dict()}) has support "
                    f"outside the state's constraint: {state} is {constraint}. "
                    f"Use a prior supported on it, e.g. "
                    f"{_prior_example(constraint)}."
                )


def _prior_example(constraint: str) -> str:
    if constraint == "positive":
        return "{distribution: LogNormal, loc: 2.3, scale: 0.5}"
    return "{distribution: Uniform, low: 0.0, high: 1.0}"


def _neural_term_as_dict(term: NeuralTerm) -> dict[str, Any]:
    description = dataclasses.asdict(term)
    description["inputs"] = list(term.inputs)
    description["adds_to"] = list(term.adds_to)
    description["input_ranges"] = {k: list(v) for k, v in term.input_ranges}
    return description


def specification_from_dict(
    description: dict[str, Any], where: str
) -> ModelSpecification:
    """Build a specification from plain data (a workflow entry or stored attribute).

    Parameters
    ----------
    description
        Keys as in :class:`ModelSpecification`; ``priors`` as prior mappings,
        ``neural_terms`` as lists of mappings, ``solver`` as a mapping.
    where
        Where the description came from, for error messages
        (e.g. ``"workflows/cells.yaml: models.passive"``).
    """
    description = dict(description)
    known = {f.name for f in dataclasses.fields(ModelSpecification)}
    unknown = sorted(set(description) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown}; a model takes {sorted(known)}."
        )
    try:
        description["priors"] = {
            name: prior_from_dict(value, f"{where}.priors.{name}")
            for name, value in (description.get("priors") or {}).items()
        }
        description["neural_terms"] = tuple(
            _neural_term_from_dict(term, f"{where}.neural_terms[{i}]")
            for i, term in enumerate(description.get("neural_terms") or ())
        )
        description["solver"] = SolverSettings(**(description.get("solver") or {}))
        description["states"] = tuple(description.get("states") or ())
        description["stimuli"] = tuple(
            StepStimulus(**stimulus) for stimulus in description.get("stimuli") or ()
        )
        description["observations"] = {
            name: observation_model_from_dict(value, f"{where}.observations.{name}")
            for name, value in (description.get("observations") or {}).items()
        }
        if "mechanistic" not in description:
            raise ValueError(
                "the field 'mechanistic' is required (a model name or null)"
            )
        return ModelSpecification(**description)
    except (TypeError, ValueError) as error:
        message = str(error)
        if message.startswith(where):
            raise ValueError(message) from None
        raise ValueError(f"{where}: {message}") from None


def _neural_term_from_dict(description: dict[str, Any], where: str) -> NeuralTerm:
    if not isinstance(description, dict) or "name" not in description:
        raise ValueError(f"{where}: a neural term is a mapping with at least a 'name'.")
    description = dict(description)
    description["inputs"] = tuple(description.get("inputs") or ())
    description["adds_to"] = tuple(description.get("adds_to") or ())
    description["input_ranges"] = tuple(
        (name, (float(low), float(high)))
        for name, (low, high) in (description.get("input_ranges") or {}).items()
    )
    try:
        return NeuralTerm(**description)
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from None
