"""The Van der Pol relaxation oscillator, the standard test of stiff solvers."""

from __future__ import annotations

from bayesude.core.mechanistic import MechanisticModel, Parameter
from bayesude.core.priors import prior


class VanDerPol(MechanisticModel):
    r"""Van der Pol (1926) oscillator in Liénard-free form.

    .. math::

        \frac{dx}{dt} &= y \\
        \frac{dy}{dt} &= \mu (1 - x^2) y - x

    Time and states are dimensionless. For large μ the orbit is a relaxation
    oscillation of period about :math:`(3 - 2\ln 2)\mu + 7.01\mu^{-1/3}`, with
    slow drifts along :math:`|x| > 1` and jumps lasting about 1/μ; the Jacobian
    then has an eigenvalue near :math:`-\mu (x^2 - 1)`, so explicit solvers need
    steps of about 1/μ throughout and the problem is stiff. It is the reference
    problem of the stiff-solver literature (Hairer & Wanner, *Solving Ordinary
    Differential Equations II*, 1996), here as a model of relaxation
    oscillations such as bursting.

    The default prior on μ spans weakly nonlinear (μ ≈ 0.1) to strongly
    relaxational (μ ≈ 100) oscillations.
    """

    name = "van_der_pol"
    states = ("x", "y")
    state_units = {"x": "1", "y": "1"}
    parameters = (
        Parameter(
            "mu",
            prior("LogNormal", loc=0.0, scale=2.0),
            "1",
            "nonlinear damping (stiffness for large values)",
        ),
    )

    def vector_field(self, t, state, params, inputs, terms):
        x, y = state["x"], state["y"]
        return {"x": y, "y": params["mu"] * (1.0 - x**2) * y - x}
