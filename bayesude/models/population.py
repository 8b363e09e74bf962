"""Population models outside neuroscience used as benchmarks for UDE methods."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax import Array

from bayesude.core.mechanistic import MechanisticModel, Parameter, ReplaceableTerm
from bayesude.core.priors import prior


class LotkaVolterra(MechanisticModel):
    r"""Predator–prey dynamics, the classic benchmark of UDE methods.

    .. math::

        \frac{dx}{dt} &= \alpha x - \beta x y \\
        \frac{dy}{dt} &= \delta x y - \gamma y

    ``x`` is the prey and ``y`` the predator population (for the Hudson's Bay
    series, thousands of pelts), time in years. Priors follow the Stan case
    study of the hare–lynx data.

    Replaceable terms ``predation(x, y)`` (β x y) and ``predator_growth(x, y)``
    (δ x y): the interactions a UDE learns.
    """

    name = "lotka_volterra"
    states = ("x", "y")
    state_units = {"x": "thousands", "y": "thousands"}
    state_constraints = {"x": "positive", "y": "positive"}
    time_units = "year"
    parameters = (
        Parameter(
            "alpha", prior("LogNormal", loc=0.0, scale=0.5), "1/year", "prey growth"
        ),
        Parameter(
            "beta",
            prior("LogNormal", loc=float(jnp.log(0.05)), scale=0.5),
            "1/(year·thousand)",
            "predation rate",
        ),
        Parameter(
            "gamma", prior("LogNormal", loc=0.0, scale=0.5), "1/year", "predator death"
        ),
        Parameter(
            "delta",
            prior("LogNormal", loc=float(jnp.log(0.05)), scale=0.5),
            "1/(year·thousand)",
            "predator growth per prey",
        ),
    )
    replaceable_terms = (
        ReplaceableTerm("predation", ("x", "y"), ("beta",), "beta * x * y"),
        ReplaceableTerm("predator_growth", ("x", "y"), ("delta",), "delta * x * y"),
    )

    def term_predation(self, params: Mapping[str, Array], x: Array, y: Array) -> Array:
        return params["beta"] * x * y

    def term_predator_growth(
        self, params: Mapping[str, Array], x: Array, y: Array
    ) -> Array:
        return params["delta"] * x * y

    def vector_field(self, t, state, params, inputs, terms):
        x, y = state["x"], state["y"]
        return {
            "x": params["alpha"] * x - terms["predation"](x, y),
            "y": terms["predator_growth"](x, y) - params["gamma"] * y,
        }


class LogisticGrowth(MechanisticModel):
    r"""Logistic growth, :math:`dy/dt = r\,y\,(1 - c(y))` with :math:`c(y) = y/K`.

    Time is dimensionless. The smallest model whose solve gets expensive for
    extreme parameters (large ``r`` makes it stiff), and the smallest UDE: a
    network can learn the crowding term ``c``.

    Replaceable term ``crowding(y)``: the density dependence y/K.
    """

    name = "logistic_growth"
    states = ("y",)
    state_units = {"y": "1"}
    state_constraints = {"y": "positive"}
    parameters = (
        Parameter("r", prior("LogNormal", loc=0.0, scale=1.0), "1/time", "growth rate"),
        Parameter(
            "K",
            prior("LogNormal", loc=float(jnp.log(10.0)), scale=0.3),
            "1",
            "carrying capacity",
        ),
    )

    replaceable_terms = (ReplaceableTerm("crowding", ("y",), ("K",), "c(y) = y / K"),)

    def term_crowding(self, params: Mapping[str, Array], y: Array) -> Array:
        return y / params["K"]

    def vector_field(self, t, state, params, inputs, terms):
        y = state["y"]
        return {"y": params["r"] * y * (1.0 - terms["crowding"](y))}
