"""The interface every mechanistic model implements.

A mechanistic model is a vector field over named states with named parameters,
each parameter carrying its units and a default prior. Parts of the vector field
that a neural network may stand in for are declared as *replaceable terms*: the
model calls them through the ``terms`` mapping it receives, so a universal
differential equation can swap one for a network without touching the model's
code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from jax import Array

from bayesude.core.priors import Prior

#: A replaceable term as the vector field calls it: state values in, one value out.
TermFunction = Callable[..., Array]


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A mechanistic parameter.

    Parameters
    ----------
    name
        Name used in the vector field, the priors and the posterior.
    prior
        Default prior, chosen to cover published values for the model.
    units
        Physical units, e.g. ``"ms"`` or ``"mV"``.
    description
        One line saying what the parameter is.
    """

    name: str
    prior: Prior
    units: str
    description: str


@dataclasses.dataclass(frozen=True)
class ReplaceableTerm:
    """A part of a vector field that a neural network may replace.

    Parameters
    ----------
    name
        Name of the term, e.g. ``"cubic"``.
    arguments
        Names of the states (or inputs) the term is a function of, in the order
        the vector field passes them.
    parameters
        Mechanistic parameters used only by this term; they leave the model when
        the term is replaced by a network.
    description
        What the term is, with its equation.
    """

    name: str
    arguments: tuple[str, ...]
    parameters: tuple[str, ...]
    description: str


class MechanisticModel:
    """Base class of the model library.

    Subclasses set the class attributes below and implement
    :meth:`vector_field` and one method ``term_<name>(params, *arguments)`` for
    each replaceable term.

    Attributes
    ----------
    name
        Name used in model specifications and workflow files.
    states
        State names, with their units in :attr:`state_units`.
    state_constraints
        Support of states that cannot take every real value, by state name:
        ``"positive"`` (populations, concentrations) or ``"unit_interval"``
        (gating variables). Initial-state parameters of these states are
        sampled in a matching space and their priors are checked against it.
    inputs
        Names of time-varying inputs the vector field reads (e.g. ``"current"``).
    time_units
        Units of time in the vector field (``"ms"`` for membranes), or None for
        a model in dimensionless time, which takes data in any time units.
    parameters
        The model's :class:`Parameter` objects.
    replaceable_terms
        The model's :class:`ReplaceableTerm` objects.
    """

    name: str = ""
    states: tuple[str, ...] = ()
    state_units: dict[str, str] = {}
    state_constraints: dict[str, str] = {}
    inputs: tuple[str, ...] = ()
    input_units: dict[str, str] = {}
    time_units: str | None = None
    parameters: tuple[Parameter, ...] = ()
    replaceable_terms: tuple[ReplaceableTerm, ...] = ()

    def vector_field(
        self,
        t: Array,
        state: Mapping[str, Array],
        params: Mapping[str, Array],
        inputs: Mapping[str, Array],
        terms: Mapping[str, TermFunction],
    ) -> dict[str, Array]:
        """Time derivative of each state.

        Parameters
        ----------
        t
            Time, in :attr:`time_units`.
        state
            Current value of each state.
        params
            Value of each parameter that the model still has.
        inputs
            Value of each input at time ``t``.
        terms
            Callable for each replaceable term, taking the term's arguments.

        Returns
        -------
        dict
            Derivative of each state, in state units per time unit.
        """
        raise NotImplementedError(f"{type(self).__name__} must define vector_field.")

    def initial_unobserved_state(
        self,
        observed_initial: Mapping[str, Array],
        params: Mapping[str, Array],
        terms: Mapping[str, TermFunction],
    ) -> dict[str, Array]:
        """Initial values of the states that are not observed.

        The default has none; models with hidden states (gating variables)
        override this, usually with the steady state at the observed initial
        values. A specification can instead fix them explicitly.
        """
        return {}

    def default_terms(self, params: Mapping[str, Array]) -> dict[str, TermFunction]:
        """The mechanistic form of every replaceable term, bound to ``params``."""
        return {
            term.name: _bind_term(getattr(self, f"term_{term.name}"), params)
            for term in self.replaceable_terms
        }

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``."""
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(
            f"{self.name} has no parameter {name!r}; its parameters are "
            f"{', '.join(p.name for p in self.parameters)}."
        )

    def replaceable_term(self, name: str) -> ReplaceableTerm:
        """The replaceable term called ``name``."""
        for term in self.replaceable_terms:
            if term.name == name:
                return term
        available = ", ".join(t.name for t in self.replaceable_terms) or "none"
        raise ValueError(
            f"{self.name} has no replaceable term {name!r}; its replaceable terms "
            f"are: {available}."
        )


def _bind_term(
    method: Callable[..., Array], params: Mapping[str, Array]
) -> TermFunction:
    def term(*arguments: Array) -> Array:
        return method(params, *arguments)

    return term
