"""The Wilson–Cowan model of interacting excitatory and inhibitory populations."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax import Array

from bayesude.core.mechanistic import MechanisticModel, Parameter, ReplaceableTerm
from bayesude.core.priors import prior


def _coupling(name: str, typical: float, description: str) -> Parameter:
    return Parameter(
        name,
        prior("LogNormal", loc=float(jnp.log(typical)), scale=0.5),
        "1",
        description,
    )


class WilsonCowan(MechanisticModel):
    r"""Wilson & Cowan (1972), without refractoriness.

    .. math::

        \tau_E \frac{dE}{dt} &= -E + S_E(w_{EE} E - w_{EI} I + P) \\
        \tau_I \frac{dI}{dt} &= -I + S_I(w_{IE} E - w_{II} I + Q)

    with :math:`S_X(x) = 1/(1 + e^{-a_X (x - \theta_X)}) - 1/(1 + e^{a_X \theta_X})`
    so that S_X(0) = 0. ``E`` and ``I`` are the fractions of active cells
    (dimensionless), time in ms. Gains and thresholds are fixed at the 1972
    paper's oscillatory values (a_E = 1.3, θ_E = 4, a_I = 2, θ_I = 3.7).

    Replaceable terms ``excitatory_response(E, I)`` and
    ``inhibitory_response(E, I)``: the whole sigmoidal drive of each population.
    """

    name = "wilson_cowan"
    states = ("E", "I")
    state_units = {"E": "1", "I": "1"}
    time_units = "ms"
    parameters = (
        Parameter(
            "tau_E",
            prior("LogNormal", loc=float(jnp.log(10.0)), scale=0.5),
            "ms",
            "excitatory time constant",
        ),
        Parameter(
            "tau_I",
            prior("LogNormal", loc=float(jnp.log(20.0)), scale=0.5),
            "ms",
            "inhibitory time constant",
        ),
        _coupling("w_EE", 16.0, "excitatory to excitatory coupling"),
        _coupling("w_EI", 12.0, "inhibitory to excitatory coupling"),
        _coupling("w_IE", 15.0, "excitatory to inhibitory coupling"),
        _coupling("w_II", 3.0, "inhibitory to inhibitory coupling"),
        Parameter(
            "P", prior("Normal", loc=1.25, scale=1.0), "1", "external drive to E"
        ),
        Parameter("Q", prior("Normal", loc=0.0, scale=1.0), "1", "external drive to I"),
    )
    replaceable_terms = (
        ReplaceableTerm(
            "excitatory_response",
            ("E", "I"),
            ("w_EE", "w_EI", "P"),
            "S_E(w_EE E - w_EI I + P)",
        ),
        ReplaceableTerm(
            "inhibitory_response",
            ("E", "I"),
            ("w_IE", "w_II", "Q"),
            "S_I(w_IE E - w_II I + Q)",
        ),
    )

    excitatory_gain, excitatory_threshold = 1.3, 4.0
    inhibitory_gain, inhibitory_threshold = 2.0, 3.7

    def term_excitatory_response(
        self, params: Mapping[str, Array], e: Array, i: Array
    ) -> Array:
        drive = params["w_EE"] * e - params["w_EI"] * i + params["P"]
        return _shifted_sigmoid(drive, self.excitatory_gain, self.excitatory_threshold)

    def term_inhibitory_response(
        self, params: Mapping[str, Array], e: Array, i: Array
    ) -> Array:
        drive = params["w_IE"] * e - params["w_II"] * i + params["Q"]
        return _shifted_sigmoid(drive, self.inhibitory_gain, self.inhibitory_threshold)

    def vector_field(self, t, state, params, inputs, terms):
        e, i = state["E"], state["I"]
        return {
            "E": (-e + terms["excitatory_response"](e, i)) / params["tau_E"],
            "I": (-i + terms["inhibitory_response"](e, i)) / params["tau_I"],
        }


def _shifted_sigmoid(x: Array, gain: float, threshold: float) -> Array:
    return jnp.reciprocal(1.0 + jnp.exp(-gain * (x - threshold))) - 1.0 / (
        1.0 + jnp.exp(gain * threshold)
    )


class WilsonCowanAdaptation(MechanisticModel):
    r"""Wilson–Cowan populations with slow adaptation of the excitatory one.

    .. math::

        \tau_E \frac{dE}{dt} &= -E + S_E(w_{EE} E - w_{EI} I - b A + P) \\
        \tau_I \frac{dI}{dt} &= -I + S_I(w_{IE} E - w_{II} I + Q) \\
        \tau_A \frac{dA}{dt} &= -A + A_\infty(E), \quad A_\infty(E) = E

    with the shifted sigmoids of :class:`WilsonCowan` (gains and thresholds of
    the 1972 paper). Slow adaptation (τ_A of hundreds of ms to seconds) turns
    the excitatory population's high-activity state into bursts separated by
    silences, the up/down alternation of cortical and hippocampal population
    activity (Tabak et al. 2000; Jercog et al. 2017). E, I and A are
    dimensionless activities, time in ms.

    Replaceable terms: ``excitatory_response(E, I, A)``,
    ``inhibitory_response(E, I)`` and ``adaptation_steady_state(E)`` (the
    level A relaxes to; a network may learn a nonlinear one).

    References
    ----------
    Wilson HR, Cowan JD (1972) Biophys J 12:1–24.
    Tabak J, Senn W, O'Donovan MJ, Rinzel J (2000) J Neurosci 20:3041–3056.
    Jercog D et al. (2017) eLife 6:e22425.
    """

    name = "wilson_cowan_adaptation"
    excitatory_gain, excitatory_threshold = 1.3, 4.0
    inhibitory_gain, inhibitory_threshold = 2.0, 3.7
    states = ("E", "I", "A")
    state_units = {"E": "1", "I": "1", "A": "1"}
    time_units = "ms"
    parameters = WilsonCowan.parameters + (
        Parameter(
            "tau_A",
            prior("LogNormal", loc=float(jnp.log(500.0)), scale=0.8),
            "ms",
            "adaptation time constant",
        ),
        Parameter(
            "b",
            prior("LogNormal", loc=float(jnp.log(5.0)), scale=0.7),
            "1",
            "strength of adaptation on the excitatory drive",
        ),
    )
    replaceable_terms = (
        ReplaceableTerm(
            "excitatory_response",
            ("E", "I", "A"),
            ("w_EE", "w_EI", "b", "P"),
            "S_E(w_EE E - w_EI I - b A + P)",
        ),
        WilsonCowan.replaceable_terms[1],
        ReplaceableTerm("adaptation_steady_state", ("E",), (), "A_inf(E) = E"),
    )

    def term_excitatory_response(
        self, params: Mapping[str, Array], e: Array, i: Array, a: Array
    ) -> Array:
        drive = params["w_EE"] * e - params["w_EI"] * i - params["b"] * a + params["P"]
        return _shifted_sigmoid(drive, self.excitatory_gain, self.excitatory_threshold)

    def term_inhibitory_response(
        self, params: Mapping[str, Array], e: Array, i: Array
    ) -> Array:
        return WilsonCowan.term_inhibitory_response(self, params, e, i)

    def term_adaptation_steady_state(
        self, params: Mapping[str, Array], e: Array
    ) -> Array:
        return e

    def vector_field(self, t, state, params, inputs, terms):
        e, i, a = state["E"], state["I"], state["A"]
        return {
            "E": (-e + terms["excitatory_response"](e, i, a)) / params["tau_E"],
            "I": (-i + terms["inhibitory_response"](e, i)) / params["tau_I"],
            "A": (-a + terms["adaptation_steady_state"](e)) / params["tau_A"],
        }

    def initial_unobserved_state(self, observed_initial, params, terms):
        # Start silent: S(0) = 0, so all-zero is the quiescent state when P = Q = 0
        # and a point inside the basin of the down state otherwise.
        zero = jnp.zeros(())
        return {name: observed_initial.get(name, zero) for name in self.states}
