"""The Hodgkin–Huxley model of the squid giant axon, with exact rate functions.

Two of the classic rate functions have the form ``x / (1 - exp(-x))``, which is
0/0 at one voltage each (-40 mV for α_m, -55 mV for α_n). Protocols often hold
the membrane at exactly such round numbers, and a naive formula then returns
NaN for the value or its derivative, silently ending a solve or a gradient.
:func:`x_over_expm1` returns the exact limit and derivative there, in float32
and float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax import Array

from bayesude.core.mechanistic import MechanisticModel, Parameter, TermFunction
from bayesude.core.priors import prior

#: Below this |x| the Taylor series of x / (e^x - 1) is used. Truncated after
#: x^6, its error is below x^8 / 1.2e6 < 1e-14 there; above it the closed form
#: loses at most eps / |x| of its derivative's accuracy (1e-6 in float32).
_SERIES_LIMIT = 0.1


def x_over_expm1(x: Array) -> Array:
    r"""``x / (exp(x) - 1)``, exact at and near ``x = 0`` (value 1, slope -1/2).

    Written with :math:`a = |x|` as :math:`a / (1 - e^{-a})`, times
    :math:`e^{-a}` when :math:`x > 0`, so no exponential of a large positive
    number is formed and neither the value nor its derivative overflows. Near
    zero the Taylor series :math:`1 - x/2 + x^2/12 - x^4/720 + x^6/30240` is
    used; the closed form sees only a safe placeholder there, so its 0/0 never
    reaches the derivative.

    Parameters
    ----------
    x
        Any shape and floating dtype.
    """
    small = jnp.abs(x) < _SERIES_LIMIT
    safe = jnp.where(small, jnp.ones_like(x), x)
    magnitude = jnp.abs(safe)
    closed_form = (
        magnitude
        / -jnp.expm1(-magnitude)
        * jnp.where(safe > 0, jnp.exp(-magnitude), jnp.ones_like(x))
    )
    x2 = x * x
    series = 1.0 - x / 2.0 + x2 / 12.0 - x2 * x2 / 720.0 + x2 * x2 * x2 / 30240.0
    return jnp.where(small, series, closed_form)


def alpha_m(v: Array) -> Array:
    """Sodium activation opening rate, 0.1 (V+40) / (1 - exp(-(V+40)/10)), 1/ms."""
    return x_over_expm1(-(v + 40.0) / 10.0)


def beta_m(v: Array) -> Array:
    """Sodium activation closing rate, 4 exp(-(V+65)/18), 1/ms."""
    return 4.0 * jnp.exp(-(v + 65.0) / 18.0)


def alpha_h(v: Array) -> Array:
    """Sodium inactivation recovery rate, 0.07 exp(-(V+65)/20), 1/ms."""
    return 0.07 * jnp.exp(-(v + 65.0) / 20.0)


def beta_h(v: Array) -> Array:
    """Sodium inactivation rate, 1 / (1 + exp(-(V+35)/10)), 1/ms."""
    return jnp.reciprocal(1.0 + jnp.exp(-(v + 35.0) / 10.0))


def alpha_n(v: Array) -> Array:
    """Potassium activation opening rate, 0.01 (V+55) / (1 - exp(-(V+55)/10)), 1/ms."""
    return 0.1 * x_over_expm1(-(v + 55.0) / 10.0)


def beta_n(v: Array) -> Array:
    """Potassium activation closing rate, 0.125 exp(-(V+65)/80), 1/ms."""
    return 0.125 * jnp.exp(-(v + 65.0) / 80.0)


def _conductance(name: str, typical: float, scale: float, what: str) -> Parameter:
    return Parameter(
        name,
        prior("LogNormal", loc=float(jnp.log(typical)), scale=scale),
        "mS/cm²",
        what,
    )


def _reversal(name: str, typical: float, what: str) -> Parameter:
    return Parameter(name, prior("Normal", loc=typical, scale=5.0), "mV", what)


class HodgkinHuxley(MechanisticModel):
    r"""Hodgkin & Huxley (1952), in the modern convention with rest at -65 mV.

    .. math::

        C \frac{dV}{dt} &= I - g_{Na} m^3 h (V - E_{Na}) - g_K n^4 (V - E_K)
                           - g_L (V - E_L) \\
        \frac{dx}{dt} &= \alpha_x(V) (1 - x) - \beta_x(V) x, \quad x = m, h, n

    with the rate functions of this module (1/ms, at 6.3 °C). Units: V in mV,
    t in ms, conductances in mS/cm², C = 1 µF/cm², current in µA/cm². Gates
    start at their steady state at the initial voltage unless given.

    Default priors are centred on Hodgkin and Huxley's values (g_Na = 120,
    g_K = 36, g_L = 0.3 mS/cm²; E_Na = 50, E_K = -77, E_L = -54.4 mV) with a
    spread covering the range reported across squid axons and the
    single-compartment neuron models derived from them (conductances within a
    factor of about two; reversals within ±10 mV).

    The sodium gate is about a hundred times faster than the membrane during a
    spike, which makes the model stiff for explicit solvers on long records;
    use ``SolverSettings(solver="Kvaerno5")`` or ``solver="automatic"``.

    References
    ----------
    Hodgkin, A. L. & Huxley, A. F. (1952). A quantitative description of
    membrane current and its application to conduction and excitation in
    nerve. *J. Physiol.* 117, 500–544.
    """

    name = "hodgkin_huxley"
    states = ("V", "m", "h", "n")
    state_units = {"V": "mV", "m": "1", "h": "1", "n": "1"}
    state_constraints = {
        "m": "unit_interval",
        "h": "unit_interval",
        "n": "unit_interval",
    }
    inputs = ("current",)
    input_units = {"current": "µA/cm²"}
    time_units = "ms"
    parameters = (
        _conductance("g_Na", 120.0, 0.3, "maximal sodium conductance"),
        _conductance("g_K", 36.0, 0.3, "maximal potassium conductance"),
        _conductance("g_L", 0.3, 0.5, "leak conductance"),
        _reversal("E_Na", 50.0, "sodium reversal potential"),
        _reversal("E_K", -77.0, "potassium reversal potential"),
        _reversal("E_L", -54.387, "leak reversal potential"),
    )

    capacitance = 1.0

    def vector_field(self, t, state, params, inputs, terms):
        v, m, h, n = state["V"], state["m"], state["h"], state["n"]
        ionic = (
            params["g_Na"] * m**3 * h * (v - params["E_Na"])
            + params["g_K"] * n**4 * (v - params["E_K"])
            + params["g_L"] * (v - params["E_L"])
        )
        return {
            "V": (inputs["current"] - ionic) / self.capacitance,
            "m": alpha_m(v) * (1.0 - m) - beta_m(v) * m,
            "h": alpha_h(v) * (1.0 - h) - beta_h(v) * h,
            "n": alpha_n(v) * (1.0 - n) - beta_n(v) * n,
        }

    def initial_unobserved_state(
        self,
        observed_initial: Mapping[str, Array],
        params: Mapping[str, Array],
        terms: Mapping[str, TermFunction],
    ) -> dict[str, Array]:
        # Recordings start from a holding potential kept long enough for the
        # gates (time constants under 10 ms) to reach their steady state.
        v = observed_initial["V"]
        return {
            "m": steady_state(alpha_m(v), beta_m(v)),
            "h": steady_state(alpha_h(v), beta_h(v)),
            "n": steady_state(alpha_n(v), beta_n(v)),
        }


def steady_state(alpha: Array, beta: Array) -> Array:
    """Steady-state open fraction of a gate, α / (α + β)."""
    return alpha / (alpha + beta)
