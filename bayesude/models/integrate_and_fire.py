"""The subthreshold part of an adaptive leaky integrate-and-fire neuron.

Units: time in ms, voltage in mV, current in pA, resistance in MΩ,
conductance in nS (so nS × mV = pA and MΩ × pA = µV, hence the factor 1e-3).
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


class AdaptiveIntegrateAndFireSubthreshold(MechanisticModel):
    r"""Adaptive leaky integrator: the AdEx model below threshold, without spikes.

    .. math::

        \tau_m \frac{dV}{dt} &= -(V - E_L) + R_{in}\,(I(t) - w) \\
        \tau_w \frac{dw}{dt} &= a\,(V - E_L) - w

    V in mV, the adaptation current w in pA, the injected current I in pA.
    This is the adaptive exponential integrate-and-fire model of Brette &
    Gerstner (2005) with the exponential term and the reset removed, i.e. its
    subthreshold dynamics; it also serves as a stimulus filter in encoding
    models (stimulus → V → spike rate through an observation link). Default
    priors cover the published ranges for cortical cells (Naud et al. 2008:
    τ_m 5–100 ms, τ_w 30–300 ms, a 0–10 nS).

    Replaceable term ``adaptation(V)``: the steady-state adaptation current
    ``a (V - E_L)``, in pA.

    References
    ----------
    Brette R, Gerstner W (2005) J Neurophysiol 94:3637–3642.
    Naud R, Marcille N, Clopath C, Gerstner W (2008) Biol Cybern 99:335–347.
    """

    name = "adaptive_lif_subthreshold"
    states = ("V", "w")
    state_units = {"V": "mV", "w": "pA"}
    inputs = ("current",)
    input_units = {"current": "pA"}
    time_units = "ms"
    parameters = (
        Parameter(
            "tau_m",
            prior("LogNormal", loc=float(jnp.log(20.0)), scale=0.8),
            "ms",
            "membrane time constant",
        ),
        Parameter(
            "E_L",
            prior("Normal", loc=-70.0, scale=10.0),
            "mV",
            "leak reversal (resting) potential",
        ),
        Parameter(
            "R_in",
            prior("LogNormal", loc=float(jnp.log(150.0)), scale=1.0),
            "MΩ",
            "input resistance",
        ),
        Parameter(
            "tau_w",
            prior("LogNormal", loc=float(jnp.log(100.0)), scale=0.8),
            "ms",
            "adaptation time constant",
        ),
        Parameter(
            "a",
            prior("LogNormal", loc=float(jnp.log(2.0)), scale=1.0),
            "nS",
            "subthreshold adaptation conductance",
        ),
    )
    replaceable_terms = (
        ReplaceableTerm(
            "adaptation", ("V",), ("a",), "steady-state adaptation a (V - E_L), pA"
        ),
    )

    def term_adaptation(self, params: Mapping[str, Array], voltage: Array) -> Array:
        return params["a"] * (voltage - params["E_L"])

    def vector_field(self, t, state, params, inputs, terms):
        voltage, adaptation = state["V"], state["w"]
        drive = params["R_in"] * (inputs["current"] - adaptation)
        steady = _steady_adaptation(terms, voltage, params["E_L"])
        return {
            "V": (-(voltage - params["E_L"]) + drive * _MEGAOHM_PICOAMP_TO_MILLIVOLT)
            / params["tau_m"],
            "w": (steady - adaptation) / params["tau_w"],
        }

    def initial_unobserved_state(
        self,
        observed_initial: Mapping[str, Array],
        params: Mapping[str, Array],
        terms: Mapping[str, TermFunction],
    ) -> dict[str, Array]:
        # The cell has sat at its initial voltage long before the recording,
        # so adaptation starts at its steady state there (rest when unobserved).
        voltage = observed_initial.get("V", params["E_L"])
        return {
            "V": voltage,
            "w": _steady_adaptation(terms, voltage, params["E_L"]),
        }


def _steady_adaptation(
    terms: Mapping[str, TermFunction], voltage: Array, resting_potential: Array
) -> Array:
    # Zero at rest whatever form the term takes, so E_L stays the resting potential.
    adaptation = terms["adaptation"]
    return adaptation(voltage) - adaptation(resting_potential)
