"""Every library model against an independent reference solution.

Each case writes the model's published equations again in numpy and solves
them with scipy's ``solve_ivp`` (DOP853, rtol 1e-11), or uses the closed-form
solution where one exists; the library's own vector field, solved by diffrax
through :func:`bayesude.core.simulate.simulate`, must agree to 1e-6.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bayesude.core.simulate import simulate
from bayesude.models import MODEL_LIBRARY, mechanistic_model


def _sigmoid_wc(x, gain, threshold):
    return 1 / (1 + np.exp(-gain * (x - threshold))) - 1 / (
        1 + np.exp(gain * threshold)
    )


def _passive_closed_form(times, p, y0, current):
    # Constant current from t = 0: V relaxes exponentially to E_L + R I.
    target = p["E_L"] + p["R_in"] * current * 1e-3
    return {"V": target + (y0["V"] - target) * np.exp(-times / p["tau_m"])}


def _logistic_closed_form(times, p, y0, current):
    y_start, r, k = y0["y"], p["r"], p["K"]
    return {"y": k / (1 + (k / y_start - 1) * np.exp(-r * times))}


def _slow_current_rhs(t, y, p, current):
    v, w = y
    act = lambda u: p["g_w"] / (1 + np.exp(-(u - p["V_half"]) / p["k_w"]))  # noqa: E731
    dv = (-(v - p["E_L"]) - w + p["R_in"] * current * 1e-3) / p["tau_m"]
    return [dv, (act(v) - act(p["E_L"]) - w) / p["tau_w"]]


def _adaptive_lif_rhs(t, y, p, current):
    v, w = y
    dv = (-(v - p["E_L"]) + p["R_in"] * (current - w) * 1e-3) / p["tau_m"]
    return [dv, (p["a"] * (v - p["E_L"]) - w) / p["tau_w"]]


def _fitzhugh_nagumo_rhs(t, y, p, current):
    v, w = y
    return [v - v**3 / 3 - w + p["I_ext"], (v + p["a"] - p["b"] * w) / p["tau"]]


def _morris_lecar_rhs(t, y, p, current):
    v, w = y
    m_inf = 0.5 * (1 + np.tanh((v - p["V_1"]) / p["V_2"]))
    w_inf = 0.5 * (1 + np.tanh((v - p["V_3"]) / p["V_4"]))
    rate = p["phi"] * np.cosh((v - p["V_3"]) / (2 * p["V_4"]))
    ionic = (
        p["g_L"] * (v + 60) + p["g_Ca"] * m_inf * (v - 120) + p["g_K"] * w * (v + 84)
    )
    return [(current - ionic) / 20.0, rate * (w_inf - w)]


def _wilson_cowan_rhs(t, y, p, current):
    e, i = y
    se = _sigmoid_wc(p["w_EE"] * e - p["w_EI"] * i + p["P"], 1.3, 4.0)
    si = _sigmoid_wc(p["w_IE"] * e - p["w_II"] * i + p["Q"], 2.0, 3.7)
    return [(-e + se) / p["tau_E"], (-i + si) / p["tau_I"]]


def _wilson_cowan_adaptation_rhs(t, y, p, current):
    e, i, a = y
    se = _sigmoid_wc(p["w_EE"] * e - p["w_EI"] * i - p["b"] * a + p["P"], 1.3, 4.0)
    si = _sigmoid_wc(p["w_IE"] * e - p["w_II"] * i + p["Q"], 2.0, 3.7)
    return [(-e + se) / p["tau_E"], (-i + si) / p["tau_I"], (e - a) / p["tau_A"]]


def _jansen_rit_rhs(t, y, p, current):
    # Jansen & Rit (1995) in seconds and s^-1 (e0 = 2.5 /s, v0 = 6 mV,
    # r = 0.56 /mV), rescaled to ms here only through a, b and p.
    y0, y1, y2, y3, y4, y5 = y
    s = lambda v: 2 * 2.5e-3 / (1 + np.exp(0.56 * (6 - v)))  # noqa: E731
    a, b, c, big_a, big_b = p["a"], p["b"], p["C"], p["A"], p["B"]
    return [
        y3,
        y4,
        y5,
        big_a * a * s(y1 - y2) - 2 * a * y3 - a**2 * y0,
        big_a * a * (p["p"] + 0.8 * c * s(c * y0)) - 2 * a * y4 - a**2 * y1,
        big_b * b * 0.25 * c * s(0.25 * c * y0) - 2 * b * y5 - b**2 * y2,
    ]


def _hh_rates(v):
    # The classic rate functions as printed (1/ms), avoiding their 0/0 voltages.
    alpha_m = 0.1 * (v + 40) / (1 - np.exp(-(v + 40) / 10))
    beta_m = 4 * np.exp(-(v + 65) / 18)
    alpha_h = 0.07 * np.exp(-(v + 65) / 20)
    beta_h = 1 / (1 + np.exp(-(v + 35) / 10))
    alpha_n = 0.01 * (v + 55) / (1 - np.exp(-(v + 55) / 10))
    beta_n = 0.125 * np.exp(-(v + 65) / 80)
    return (alpha_m, beta_m), (alpha_h, beta_h), (alpha_n, beta_n)


def _hodgkin_huxley_rhs(t, y, p, current):
    v, m, h, n = y
    (am, bm), (ah, bh), (an, bn) = _hh_rates(v)
    ionic = (
        p["g_Na"] * m**3 * h * (v - p["E_Na"])
        + p["g_K"] * n**4 * (v - p["E_K"])
        + p["g_L"] * (v - p["E_L"])
    )
    return [
        current - ionic,
        am * (1 - m) - bm * m,
        ah * (1 - h) - bh * h,
        an * (1 - n) - bn * n,
    ]


def _hh_resting_gates(v):
    return {
        gate: alpha / (alpha + beta) for gate, (alpha, beta) in zip("mhn", _hh_rates(v))
    }


def _van_der_pol_rhs(t, y, p, current):
    x, z = y
    return [z, p["mu"] * (1 - x**2) * z - x]


def _lotka_volterra_rhs(t, y, p, current):
    x, z = y
    return [p["alpha"] * x - p["beta"] * x * z, p["delta"] * x * z - p["gamma"] * z]


WILSON_COWAN_1972 = {
    "tau_E": 10.0,
    "tau_I": 20.0,
    "w_EE": 16.0,
    "w_EI": 12.0,
    "w_IE": 15.0,
    "w_II": 3.0,
    "P": 1.25,
    "Q": 0.0,
}

#: name: (parameters, initial state, constant current, t_end, reference)
#: ``reference`` is a closed form ``f(times, p, y0, current)`` or a numpy
#: right-hand side for solve_ivp.
CASES = {
    "passive_membrane": (
        {"tau_m": 15.0, "E_L": -65.0, "R_in": 150.0},
        {"V": -70.0},
        -100.0,
        60.0,
        _passive_closed_form,
    ),
    "slow_current_membrane": (
        {
            "tau_m": 15.0,
            "E_L": -65.0,
            "R_in": 150.0,
            "tau_w": 80.0,
            "g_w": 5.0,
            "V_half": -80.0,
            "k_w": 8.0,
        },
        {"V": -65.0, "w": 0.0},
        -100.0,
        300.0,
        _slow_current_rhs,
    ),
    "adaptive_lif_subthreshold": (
        {"tau_m": 20.0, "E_L": -70.0, "R_in": 150.0, "tau_w": 100.0, "a": 2.0},
        {"V": -70.0, "w": 0.0},
        80.0,
        300.0,
        _adaptive_lif_rhs,
    ),
    "fitzhugh_nagumo": (
        {"a": 0.7, "b": 0.8, "tau": 12.5, "I_ext": 0.5},
        {"v": -1.0, "w": 1.0},
        0.0,
        100.0,
        _fitzhugh_nagumo_rhs,
    ),
    "morris_lecar": (
        {
            "g_L": 2.0,
            "g_Ca": 4.4,
            "g_K": 8.0,
            "phi": 0.04,
            "V_1": -1.2,
            "V_2": 18.0,
            "V_3": 2.0,
            "V_4": 30.0,
        },
        {"V": -60.0, "w": 0.01},
        100.0,
        200.0,
        _morris_lecar_rhs,
    ),
    "wilson_cowan": (
        WILSON_COWAN_1972,
        {"E": 0.1, "I": 0.05},
        0.0,
        200.0,
        _wilson_cowan_rhs,
    ),
    "wilson_cowan_adaptation": (
        {**WILSON_COWAN_1972, "tau_A": 500.0, "b": 5.0},
        {"E": 0.1, "I": 0.05, "A": 0.0},
        0.0,
        1500.0,
        _wilson_cowan_adaptation_rhs,
    ),
    "jansen_rit": (
        {"A": 3.25, "B": 22.0, "a": 0.1, "b": 0.05, "C": 135.0, "p": 0.22},
        {"y0": 0.0, "y1": 0.0, "y2": 0.0, "y3": 0.0, "y4": 0.0, "y5": 0.0},
        0.0,
        500.0,
        _jansen_rit_rhs,
    ),
    "hodgkin_huxley": (
        {
            "g_Na": 120.0,
            "g_K": 36.0,
            "g_L": 0.3,
            "E_Na": 50.0,
            "E_K": -77.0,
            "E_L": -54.387,
        },
        {"V": -65.0, **_hh_resting_gates(-65.0)},
        10.0,
        30.0,
        _hodgkin_huxley_rhs,
    ),
    "van_der_pol": (
        {"mu": 2.0},
        {"x": 2.0, "y": 0.0},
        0.0,
        20.0,
        _van_der_pol_rhs,
    ),
    "lotka_volterra": (
        {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024},
        {"x": 30.0, "y": 4.0},
        0.0,
        20.0,
        _lotka_volterra_rhs,
    ),
    "logistic_growth": (
        {"r": 0.8, "K": 10.0},
        {"y": 0.5},
        0.0,
        15.0,
        _logistic_closed_form,
    ),
}


def _reference(name, times):
    params, y0, current, _, reference = CASES[name]
    model = mechanistic_model(name)
    closed_form = reference in (_passive_closed_form, _logistic_closed_form)
    if closed_form:
        return reference(times, params, y0, current)
    solution = solve_ivp(
        reference,
        (times[0], times[-1]),
        [y0[s] for s in model.states],
        method="DOP853",
        t_eval=times,
        rtol=1e-11,
        atol=1e-12,
        args=(params, current),
    )
    assert solution.success
    return {s: solution.y[i] for i, s in enumerate(model.states)}


def test_every_library_model_has_a_reference_case():
    # Tests register small models of their own; only bayesude's are checked.
    shipped = [
        name
        for name, model in MODEL_LIBRARY.items()
        if model.__module__.startswith("bayesude.")
    ]
    assert sorted(shipped) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulation_matches_reference_solution(name):
    params, y0, current, t_end, _ = CASES[name]
    model = mechanistic_model(name)
    times = np.linspace(0.0, t_end, 41)
    inputs = {i: np.full_like(times, current) for i in model.inputs}

    states, success = simulate(model, params, y0, times, inputs)

    assert bool(success)
    expected = _reference(name, times)
    for state in model.states:
        scale = max(np.max(np.abs(expected[state])), 1e-3)
        np.testing.assert_allclose(
            np.asarray(states[state]), expected[state], atol=1e-6 * scale, rtol=1e-6
        )


def test_wilson_cowan_adaptation_bursts_and_falls_silent():
    """With slow adaptation the 1972 parameters alternate high and low activity."""
    params, y0, _, _, _ = CASES["wilson_cowan_adaptation"]
    params = {**params, "P": 2.0}
    times = np.linspace(0.0, 5000.0, 501)
    states, success = simulate(
        mechanistic_model("wilson_cowan_adaptation"), params, y0, times
    )
    activity = np.asarray(states["E"])[100:]
    assert bool(success)
    assert activity.max() > 0.3 and activity.min() < 0.05


def test_jansen_rit_has_published_alpha_rhythm():
    """At p = 220 /s the EEG proxy y1 - y2 oscillates at alpha frequency (8-12 Hz)."""
    params, y0, _, _, _ = CASES["jansen_rit"]
    times = np.linspace(0.0, 2000.0, 4001)
    states, _ = simulate(mechanistic_model("jansen_rit"), params, y0, times)
    eeg = np.asarray(states["y1"] - states["y2"])[1000:]
    spectrum = np.abs(np.fft.rfft(eeg - eeg.mean()))
    frequencies_hz = np.fft.rfftfreq(eeg.size, d=0.5e-3)
    peak_hz = frequencies_hz[np.argmax(spectrum)]
    assert 8.0 <= peak_hz <= 12.0


def test_every_parameter_has_units_and_a_description():
    for name in CASES:
        model = mechanistic_model(name)
        for parameter in model.parameters:
            assert parameter.units and parameter.description, (name, parameter.name)
        assert set(model.state_units) == set(model.states), name
