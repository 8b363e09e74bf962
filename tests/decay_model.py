"""A one-state exponential decay, dy/dt = -k y, for tests of data handling.

Small enough that a fit compiles in seconds, with a closed-form solution
y(t) = y0 exp(-k (t - t0)) to check predictions against.
"""

from bayesude.core.mechanistic import MechanisticModel, Parameter
from bayesude.core.priors import prior


class ExponentialDecay(MechanisticModel):
    r""":math:`dy/dt = -k\,y`, time dimensionless."""

    name = "exponential_decay"
    states = ("y",)
    state_units = {"y": "1"}
    parameters = (
        Parameter("k", prior("LogNormal", loc=-1.0, scale=1.0), "1/time", "decay rate"),
    )

    def vector_field(self, t, state, params, inputs, terms):
        return {"y": -params["k"] * state["y"]}
