"""The gradient given to the sampler is the derivative of the log density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import bayesude
from bayesude.core.numerical_warnings import GradientAccuracyWarning
from bayesude.core.solve import ADJOINTS, SolverSettings, solve_at_times

# y1' = -a y1, y2' = -b y1 - c y2, y(0) = (1, 1), T = 3, L = |y(T)|^2, from the
# matrix exponential.
PARAMETERS = {"a": 0.5, "b": 0.01, "c": 1.2}
Y_AT_T = np.array([0.22313016, 0.02452649])
LOSS = 0.0503886170
LOSS_GRADIENT = {"a": -0.2984493, "b": -0.0137213, "c": -0.0038824}
LOSS_GRADIENT_Y0 = np.array([0.0994369, 0.0013403])


def _linear_field(t, y, args):
    return jnp.stack([-args["a"] * y[0], -args["b"] * y[0] - args["c"] * y[1]])


def _loss_and_gradient(settings: SolverSettings):
    times = jnp.array([0.0, 3.0])

    def loss(args, y0):
        states = solve_at_times(
            _linear_field, y0, times, args, settings, np.zeros(0)
        ).states
        return jnp.sum(states[-1] ** 2)

    args = {name: jnp.asarray(value) for name, value in PARAMETERS.items()}
    y0 = jnp.array([1.0, 1.0])
    differentiate = jax.jacfwd if settings.adjoint == "forward" else jax.grad
    gradient = jax.jit(differentiate(loss, argnums=(0, 1)))(args, y0)
    return float(loss(args, y0)), gradient


def _relative_error(value, reference):
    return np.max(np.abs(np.asarray(value) - reference) / np.abs(reference))


def test_default_settings_match_the_closed_form_gradient_to_1e_4():
    value, (gradient, gradient_y0) = _loss_and_gradient(SolverSettings())
    assert _relative_error(value, LOSS) < 1e-4
    for name, reference in LOSS_GRADIENT.items():
        assert _relative_error(gradient[name], reference) < 1e-4, name
    assert _relative_error(gradient_y0, LOSS_GRADIENT_Y0) < 1e-4


SOLVERS = ["Tsit5", "Dopri5", "Dopri8", "Kvaerno3", "Kvaerno5"]
# Every adjoint with the default solver and every solver with the default adjoint
# run by default; the whole grid (implicit solvers compile slowly) in the slow suite.
DEFAULT_GRID = [(adjoint, "Tsit5") for adjoint in sorted(ADJOINTS)] + [
    ("recursive_checkpoint", solver) for solver in SOLVERS[1:]
]
SLOW_GRID = [
    pytest.param(adjoint, solver, marks=pytest.mark.slow)
    for adjoint in sorted(ADJOINTS)
    for solver in SOLVERS
    if (adjoint, solver) not in DEFAULT_GRID
]


@pytest.mark.parametrize(("adjoint", "solver"), DEFAULT_GRID + SLOW_GRID)
def test_every_adjoint_and_solver_match_the_closed_form_gradient_to_1e_3(
    adjoint, solver
):
    settings = SolverSettings(solver=solver, adjoint=adjoint)
    value, (gradient, gradient_y0) = _loss_and_gradient(settings)
    assert _relative_error(value, LOSS) < 1e-3
    for name, reference in LOSS_GRADIENT.items():
        assert _relative_error(gradient[name], reference) < 1e-3, name
    assert _relative_error(gradient_y0, LOSS_GRADIENT_Y0) < 1e-3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (SolverSettings(rtol=1e-2), "rtol=0.01 is looser than 0.001"),
        (SolverSettings(solver="Heun"), "Heun has order 2"),
    ],
)
def test_loose_tolerance_or_low_order_solver_warns_that_gradients_are_unreliable(
    settings, message
):
    times = np.linspace(0.0, 5.0, 11)
    data = xr.Dataset(
        {"y": (("sweep", "time"), (1.0 + 0.1 * times)[None], {"units": "1"})},
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )
    spec = bayesude.ModelSpecification(
        mechanistic="logistic_growth",
        observed={"y": "y"},
        initial_state={"y": 1.0},
        solver=settings,
    )
    with pytest.warns(GradientAccuracyWarning, match=message):
        bayesude.check_model(spec, data, num_draws=2)
