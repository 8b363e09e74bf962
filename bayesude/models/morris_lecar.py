"""The Morris–Lecar model of a barnacle muscle fibre (type I/II excitability)."""

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


def _positive(name: str, typical: float, units: str, description: str) -> Parameter:
    return Parameter(
        name,
        prior("LogNormal", loc=float(jnp.log(typical)), scale=0.3),
        units,
        description,
    )


def _voltage(name: str, typical: float, description: str) -> Parameter:
    return Parameter(name, prior("Normal", loc=typical, scale=5.0), "mV", description)


class MorrisLecar(MechanisticModel):
    r"""Morris & Lecar (1981), with Rinzel & Ermentrout's (1989) parameters.

    .. math::

        C \frac{dV}{dt} &= I - g_L (V - E_L) - g_{Ca}\, m_\infty(V) (V - E_{Ca})
                           - g_K\, w\, (V - E_K) \\
        \frac{dw}{dt} &= \phi \, \frac{w_\infty(V) - w}{\tau_w(V)}

    with :math:`m_\infty = \tfrac12(1 + \tanh((V - V_1)/V_2))`,
    :math:`w_\infty = \tfrac12(1 + \tanh((V - V_3)/V_4))` and
    :math:`\tau_w = 1/\cosh((V - V_3)/(2 V_4))`. Units: V in mV, t in ms,
    conductances in mS/cm², C in µF/cm², current in µA/cm². The reversal
    potentials E_L, E_Ca, E_K and the capacitance are fixed at the published
    values (they are rarely identifiable from voltage alone); the conductances,
    φ and the activation midpoints have priors around them.

    Replaceable terms ``calcium_activation(V)`` (m_∞) and
    ``potassium_activation(V)`` (w_∞).
    """

    name = "morris_lecar"
    states = ("V", "w")
    state_units = {"V": "mV", "w": "1"}
    inputs = ("current",)
    input_units = {"current": "µA/cm²"}
    time_units = "ms"
    parameters = (
        _positive("g_L", 2.0, "mS/cm²", "leak conductance"),
        _positive("g_Ca", 4.4, "mS/cm²", "maximal calcium conductance"),
        _positive("g_K", 8.0, "mS/cm²", "maximal potassium conductance"),
        _positive("phi", 0.04, "1/ms", "rate scale of potassium activation"),
        _voltage("V_1", -1.2, "calcium activation midpoint"),
        _positive("V_2", 18.0, "mV", "calcium activation slope"),
        _voltage("V_3", 2.0, "potassium activation midpoint"),
        _positive("V_4", 30.0, "mV", "potassium activation slope"),
    )
    replaceable_terms = (
        ReplaceableTerm(
            "calcium_activation",
            ("V",),
            ("V_1", "V_2"),
            "m_inf(V) = (1 + tanh((V - V_1) / V_2)) / 2",
        ),
        ReplaceableTerm(
            "potassium_activation",
            ("V",),
            (),
            "w_inf(V) = (1 + tanh((V - V_3) / V_4)) / 2",
        ),
    )

    capacitance = 20.0
    leak_reversal = -60.0
    calcium_reversal = 120.0
    potassium_reversal = -84.0

    def term_calcium_activation(self, params: Mapping[str, Array], v: Array) -> Array:
        return 0.5 * (1.0 + jnp.tanh((v - params["V_1"]) / params["V_2"]))

    def term_potassium_activation(self, params: Mapping[str, Array], v: Array) -> Array:
        return 0.5 * (1.0 + jnp.tanh((v - params["V_3"]) / params["V_4"]))

    def vector_field(self, t, state, params, inputs, terms):
        v, w = state["V"], state["w"]
        ionic = (
            params["g_L"] * (v - self.leak_reversal)
            + params["g_Ca"]
            * terms["calcium_activation"](v)
            * (v - self.calcium_reversal)
            + params["g_K"] * w * (v - self.potassium_reversal)
        )
        rate = params["phi"] * jnp.cosh((v - params["V_3"]) / (2.0 * params["V_4"]))
        return {
            "V": (inputs["current"] - ionic) / self.capacitance,
            "w": rate * (terms["potassium_activation"](v) - w),
        }

    def initial_unobserved_state(
        self,
        observed_initial: Mapping[str, Array],
        params: Mapping[str, Array],
        terms: Mapping[str, TermFunction],
    ) -> dict[str, Array]:
        return {"w": terms["potassium_activation"](observed_initial["V"])}
