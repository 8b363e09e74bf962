"""The FitzHugh–Nagumo model of an excitable membrane (dimensionless)."""

from __future__ import annotations

from collections.abc import Mapping

from jax import Array

from bayesude.core.mechanistic import MechanisticModel, Parameter, ReplaceableTerm
from bayesude.core.priors import prior


class FitzHughNagumo(MechanisticModel):
    r"""FitzHugh–Nagumo, in FitzHugh's (1961) dimensionless form.

    .. math::

        \frac{dv}{dt} &= f(v) - w + I \\
        \tau \frac{dw}{dt} &= v + a - b w, \qquad f(v) = v - v^3/3

    ``v`` is a dimensionless membrane potential, ``w`` a recovery variable, and
    time is dimensionless (data in any time units are accepted). The classic
    values a = 0.7, b = 0.8, τ = 12.5, I = 0.5 give a limit cycle.

    Replaceable term ``cubic_nonlinearity(v)``: the fast nullcline shape f(v).
    """

    name = "fitzhugh_nagumo"
    states = ("v", "w")
    state_units = {"v": "1", "w": "1"}
    parameters = (
        Parameter("a", prior("Normal", loc=0.7, scale=0.3), "1", "recovery offset"),
        Parameter("b", prior("Normal", loc=0.8, scale=0.3), "1", "recovery damping"),
        Parameter(
            "tau",
            prior("LogNormal", loc=2.5, scale=0.5),
            "1",
            "recovery time scale relative to v",
        ),
        Parameter("I_ext", prior("Normal", loc=0.5, scale=0.5), "1", "external drive"),
    )
    replaceable_terms = (
        ReplaceableTerm(
            "cubic_nonlinearity", ("v",), (), "f(v) = v - v**3 / 3, the fast nullcline"
        ),
    )

    def term_cubic_nonlinearity(self, params: Mapping[str, Array], v: Array) -> Array:
        return v - v**3 / 3.0

    def vector_field(self, t, state, params, inputs, terms):
        v, w = state["v"], state["w"]
        return {
            "v": terms["cubic_nonlinearity"](v) - w + params["I_ext"],
            "w": (v + params["a"] - params["b"] * w) / params["tau"],
        }
