"""Subthreshold membrane models for current-clamp recordings.

Units throughout: time in ms, voltage in mV, current in pA, resistance in MΩ
(so MΩ × pA = µV, hence the factor 1e-3 to reach mV).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax import Array

from bayesude.core.mechanistic import (
    MechanisticModel,
    Parameter,
    ReplaceableTerm,
    TermFunction,
)
from bayesude.core.priors import prior

_MEGAOHM_PICOAMP_TO_MILLIVOLT = 1e-3

_MEMBRANE_TIME_CONSTANT = Parameter(
    "tau_m",
    prior("LogNormal", loc=float(jnp.log(20.0)), scale=0.8),
    "ms",
    "membrane time constant",
)
_RESTING_POTENTIAL = Parameter(
    "E_L",
    prior("Normal", loc=-70.0, scale=10.0),
    "mV",
    "resting (leak reversal) potential",
)
_INPUT_RESISTANCE = Parameter(
    "R_in",
    prior("LogNormal", loc=float(jnp.log(150.0)), scale=1.0),
    "MΩ",
    "input resistance",
)


class PassiveMembrane(MechanisticModel):
    r"""A leaky integrator driven by the injected current.

    .. math::

        \tau_m \frac{dV}{dt} = -(V - E_L) + R_{in} I(t)

    with V in mV, t in ms, I in pA and R_in in MΩ. The default priors cover
    neocortical and hippocampal neurons recorded in slices (τ_m ≈ 5–100 ms,
    R_in ≈ 30–800 MΩ).
    """

    name = "passive_membrane"
    states = ("V",)
    state_units = {"V": "mV"}
    inputs = ("current",)
    input_units = {"current": "pA"}
    time_units = "ms"
    parameters = (_MEMBRANE_TIME_CONSTANT, _RESTING_POTENTIAL, _INPUT_RESISTANCE)

    def vector_field(self, t, state, params, inputs, terms):
        drive = params["R_in"] * inputs["current"] * _MEGAOHM_PICOAMP_TO_MILLIVOLT
        return {"V": (-(state["V"] - params["E_L"]) + drive) / params["tau_m"]}


class SlowCurrentMembrane(MechanisticModel):
    r"""A passive membrane with one slow voltage-gated current, such as I_h.

    .. math::

        \tau_m \frac{dV}{dt} &= -(V - E_L) - w + R_{in} I(t) \\
        \tau_w \frac{dw}{dt} &= a(V) - a(E_L) - w

    ``w`` (mV) is the slow current expressed as the voltage it drops across the
    input resistance. Its steady state ``a(V) - a(E_L)`` is zero at rest, so
    ``E_L`` stays the resting potential whatever form ``a`` takes; this is what
    keeps ``E_L`` identifiable when a network replaces ``a``. The mechanistic
    form is a sigmoid,

    .. math:: a(V) = \frac{g_w}{1 + e^{-(V - V_{1/2})/k_w}},

    which produces the depolarising sag seen during hyperpolarising steps when
    the current deactivates below rest (I_h-like).

    Replaceable term ``slow_activation(V)``: the steady-state curve ``a``.
    """

    name = "slow_current_membrane"
    states = ("V", "w")
    state_units = {"V": "mV", "w": "mV"}
    inputs = ("current",)
    input_units = {"current": "pA"}
    time_units = "ms"
    parameters = (
        _MEMBRANE_TIME_CONSTANT,
        _RESTING_POTENTIAL,
        _INPUT_RESISTANCE,
        Parameter(
            "tau_w",
            prior("LogNormal", loc=float(jnp.log(80.0)), scale=0.8),
            "ms",
            "time constant of the slow current",
        ),
        Parameter(
            "g_w",
            prior("LogNormal", loc=float(jnp.log(5.0)), scale=1.0),
            "mV",
            "maximal slow current, as a voltage across R_in",
        ),
        Parameter(
            "V_half",
            prior("Normal", loc=-80.0, scale=10.0),
            "mV",
            "half-activation voltage of the slow current",
        ),
        Parameter(
            "k_w",
            prior("LogNormal", loc=float(jnp.log(8.0)), scale=0.5),
            "mV",
            "slope factor of the slow current's activation",
        ),
    )
    replaceable_terms = (
        ReplaceableTerm(
            "slow_activation",
            ("V",),
            ("g_w", "V_half", "k_w"),
            "steady-state slow current a(V) in mV (sigmoid of V)",
        ),
    )

    def term_slow_activation(
        self, params: Mapping[str, Array], voltage: Array
    ) -> Array:
        return params["g_w"] * jnp.reciprocal(
            1.0 + jnp.exp(-(voltage - params["V_half"]) / params["k_w"])
        )

    def vector_field(self, t, state, params, inputs, terms):
        voltage, slow = state["V"], state["w"]
        drive = params["R_in"] * inputs["current"] * _MEGAOHM_PICOAMP_TO_MILLIVOLT
        steady_slow = _slow_steady_state(terms, voltage, params["E_L"])
        return {
            "V": (-(voltage - params["E_L"]) - slow + drive) / params["tau_m"],
            "w": (steady_slow - slow) / params["tau_w"],
        }

    def initial_unobserved_state(
        self,
        observed_initial: Mapping[str, Array],
        params: Mapping[str, Array],
        terms: Mapping[str, TermFunction],
    ) -> dict[str, Array]:
        # Recordings start at a holding level the cell has sat at for seconds,
        # so the slow current starts at its steady state there.
        voltage = observed_initial["V"]
        return {"w": _slow_steady_state(terms, voltage, params["E_L"])}


def _slow_steady_state(
    terms: Mapping[str, TermFunction], voltage: Array, resting_potential: Array
) -> Array:
    activation = terms["slow_activation"]
    return activation(voltage) - activation(resting_potential)
