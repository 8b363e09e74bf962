"""The Jansen–Rit neural mass model of a cortical column."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax import Array

from bayesude.core.mechanistic import MechanisticModel, Parameter, ReplaceableTerm
from bayesude.core.priors import prior


def _log_normal(typical: float, scale: float = 0.3):
    return prior("LogNormal", loc=float(jnp.log(typical)), scale=scale)


class JansenRit(MechanisticModel):
    r"""Jansen & Rit (1995): pyramidal cells with excitatory and inhibitory neurons.

    .. math::

        \dot y_0 &= y_3, &\quad \dot y_3 &= A a\,S(y_1 - y_2) - 2a y_3 - a^2 y_0 \\
        \dot y_1 &= y_4, &\quad \dot y_4 &= A a\,(p + C_2 S(C_1 y_0)) - 2a y_4
            - a^2 y_1 \\
        \dot y_2 &= y_5, &\quad \dot y_5 &= B b\,C_4 S(C_3 y_0) - 2b y_5 - b^2 y_2

    with :math:`S(v) = 2 e_0 / (1 + e^{r (v_0 - v)})`, :math:`C_1 = C`,
    :math:`C_2 = 0.8 C`, :math:`C_3 = C_4 = 0.25 C`. ``y0``, ``y1``, ``y2``
    are mean postsynaptic potentials (mV); ``y1 - y2``, the pyramidal
    membrane potential, is the usual EEG proxy. Time in ms, so the rate
    constants a, b and the input p are per ms (a = 100 s⁻¹ is 0.1 ms⁻¹).
    Priors centre on the published values (A = 3.25 mV, B = 22 mV,
    a = 100 s⁻¹, b = 50 s⁻¹, C = 135, p in 120–320 s⁻¹); e_0 = 2.5 s⁻¹,
    v_0 = 6 mV and r = 0.56 mV⁻¹ are fixed.

    Replaceable term ``firing_rate(v)``: the sigmoid S, in spikes per ms.

    References
    ----------
    Jansen BH, Rit VG (1995) Biol Cybern 73:357–366.
    """

    name = "jansen_rit"
    states = ("y0", "y1", "y2", "y3", "y4", "y5")
    state_units = {
        "y0": "mV",
        "y1": "mV",
        "y2": "mV",
        "y3": "mV/ms",
        "y4": "mV/ms",
        "y5": "mV/ms",
    }
    time_units = "ms"
    parameters = (
        Parameter("A", _log_normal(3.25), "mV", "excitatory synaptic gain"),
        Parameter("B", _log_normal(22.0), "mV", "inhibitory synaptic gain"),
        Parameter("a", _log_normal(0.1), "1/ms", "excitatory synaptic rate constant"),
        Parameter("b", _log_normal(0.05), "1/ms", "inhibitory synaptic rate constant"),
        Parameter("C", _log_normal(135.0), "1", "number of synaptic contacts"),
        Parameter(
            "p",
            prior("TruncatedNormal", loc=0.22, scale=0.05, low=0.0, high=1.0),
            "1/ms",
            "mean input firing rate from other columns",
        ),
    )
    replaceable_terms = (
        ReplaceableTerm("firing_rate", ("v",), (), "2 e0 / (1 + exp(r (v0 - v)))"),
    )

    max_rate_per_ms = 2 * 2.5e-3
    v0_mv, r_per_mv = 6.0, 0.56

    def term_firing_rate(self, params: Mapping[str, Array], v: Array) -> Array:
        return self.max_rate_per_ms / (1.0 + jnp.exp(self.r_per_mv * (self.v0_mv - v)))

    def vector_field(self, t, state, params, inputs, terms):
        y0, y1, y2, y3, y4, y5 = (state[name] for name in self.states)
        rate = terms["firing_rate"]
        a, b, c = params["a"], params["b"], params["C"]
        return {
            "y0": y3,
            "y1": y4,
            "y2": y5,
            "y3": params["A"] * a * rate(y1 - y2) - 2 * a * y3 - a**2 * y0,
            "y4": params["A"] * a * (params["p"] + 0.8 * c * rate(c * y0))
            - 2 * a * y4
            - a**2 * y1,
            "y5": params["B"] * b * 0.25 * c * rate(0.25 * c * y0)
            - 2 * b * y5
            - b**2 * y2,
        }

    def initial_unobserved_state(self, observed_initial, params, terms):
        zero = jnp.zeros(())
        return {name: observed_initial.get(name, zero) for name in self.states}
