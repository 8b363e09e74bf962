"""Convergence of a UDE judged on functions, not on its symmetric weights.

The minimal problem: dV/dt = (-(V - E_L) + R_in I) / tau_m + g(V), with
E_L = -70 mV, R_in I = 15 mV, tau_m = 20 ms, V(0) = -70 mV, and an MLP
1 -> 4 -> 1 (tanh) for g whose truth is 0.5 tanh((V + 60) / 10) mV/ms; 40
observations on [0, 100] ms with noise 0.5 mV.
"""

import dataclasses
import json

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import log_density
from scipy.integrate import solve_ivp

import bayesude
from bayesude.diagnostics import convergence_verdict
from bayesude.functions import network_output_draws
from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data

E_L_MV, DRIVE_MV, TAU_M_MS, NOISE_MV = -70.0, 15.0, 20.0, 0.5
R_IN_MOHM = 100.0
WIDTH = 4


def true_term(voltage):
    return 0.5 * np.tanh((voltage + 60.0) / 10.0)


def _recording(seed: int = 0) -> xr.Dataset:
    times = np.linspace(0.0, 100.0, 40)

    def rhs(t, v):
        return (-(v - E_L_MV) + DRIVE_MV) / TAU_M_MS + true_term(v)

    solution = solve_ivp(rhs, (0.0, 100.0), [E_L_MV], t_eval=times, rtol=1e-10)
    noise = NOISE_MV * np.random.default_rng(seed).normal(size=times.size)
    current = np.full((1, times.size), DRIVE_MV / R_IN_MOHM * 1e3)
    return xr.Dataset(
        {
            "voltage": (
                ("sweep", "time"),
                solution.y + noise,
                {"units": "mV", "role": "observed"},
            ),
            "current": (("sweep", "time"), current, {"units": "pA", "role": "input"}),
        },
        coords={"sweep": [0], "time": ("time", times, {"units": "ms"})},
    )


def _spec() -> bayesude.ModelSpecification:
    return bayesude.ModelSpecification(
        mechanistic="passive_membrane",
        observed={"voltage": "V"},
        fixed={"tau_m": TAU_M_MS, "E_L": E_L_MV, "R_in": R_IN_MOHM},
        initial_state={"V": E_L_MV},
        neural_terms=(
            bayesude.NeuralTerm("g", adds_to=("V",), inputs=("V",), width=WIDTH),
        ),
    )


def _hidden_unit_symmetry(network, weights, permutation, signs):
    """Weights with hidden units permuted and tanh units' signs flipped."""
    arrays = network._unravel(jnp.asarray(weights))
    first, second = arrays.layers
    signs = jnp.asarray(signs, dtype=float)
    permutation = jnp.asarray(permutation)
    transformed = eqx.tree_at(
        lambda mlp: (
            mlp.layers[0].weight,
            mlp.layers[0].bias,
            mlp.layers[1].weight,
        ),
        arrays,
        (
            first.weight[permutation] * signs[:, None],
            first.bias[permutation] * signs,
            second.weight[:, permutation] * signs[None, :],
        ),
    )
    return np.asarray(ravel_pytree(transformed)[0])


@pytest.fixture(scope="module")
def built():
    spec = _spec()
    # fit() resolves the automatic adjoint; building the model directly needs one.
    spec = dataclasses.replace(
        spec, solver=dataclasses.replace(spec.solver, adjoint="recursive_checkpoint")
    )
    return build_model(spec, prepare_data(spec, _recording(), "cell"))


@pytest.fixture(scope="module")
def density(built):
    """The model's log density as a function of the network weights (compiled)."""

    @jax.jit
    def log_density_of(weights):
        params = {"g_weights": weights, "sigma_voltage": jnp.asarray(0.5)}
        return log_density(built.model, (), {}, params)[0]

    return log_density_of


@pytest.mark.parametrize(
    ("permutation", "signs"),
    [([2, 0, 3, 1], [1, 1, 1, 1]), ([0, 1, 2, 3], [1, -1, 1, -1])],
    ids=["permuted", "sign-flipped"],
)
def test_hidden_unit_symmetries_leave_the_log_density_unchanged(
    built, density, permutation, signs
):
    network = built.networks["g"]
    weights = np.random.default_rng(1).normal(size=network.num_weights)
    moved = _hidden_unit_symmetry(network, weights, permutation, signs)

    assert not np.allclose(moved, weights)
    difference = density(jnp.asarray(moved)) - density(jnp.asarray(weights))
    assert abs(float(difference)) < 1e-10


def _symmetric_chains_fit(built, num_draws: int = 400) -> az.InferenceData:
    """Four chains that agree on the function and disagree on the weights.

    Every chain draws from the same distribution of networks, each seen
    through a different hidden-unit permutation and sign flip.
    """
    network = built.networks["g"]
    rng = np.random.default_rng(2)
    centre = rng.normal(size=network.num_weights)
    symmetries = [
        ([0, 1, 2, 3], [1, 1, 1, 1]),
        ([3, 2, 1, 0], [1, 1, 1, 1]),
        ([1, 0, 3, 2], [-1, 1, -1, 1]),
        ([2, 3, 0, 1], [-1, -1, -1, -1]),
    ]
    # The symmetries are signed permutations of the flat weights: find each one
    # by moving the labels 1..n, then apply it to all draws at once.
    labels = np.arange(1.0, network.num_weights + 1.0)
    draws = centre + 0.05 * rng.normal(size=(4, num_draws, centre.size))
    weights = np.empty_like(draws)
    for chain, symmetry in enumerate(symmetries):
        moved = _hidden_unit_symmetry(network, labels, *symmetry)
        index, sign = np.abs(moved).astype(int) - 1, np.sign(moved)
        weights[chain] = draws[chain][:, index] * sign
    idata = az.from_dict(
        posterior={
            "g_weights": weights,
            "sigma_voltage": 0.5 + 0.01 * rng.normal(size=(4, num_draws)),
        },
        dims={"g_weights": ["g_weight"]},
    )
    low = float(network.input_centres[0] - network.input_half_widths[0])
    high = float(network.input_centres[0] + network.input_half_widths[0])
    idata.posterior.attrs.update(
        model_specification=_spec().to_json(),
        network_input_ranges=json.dumps({"g": {"V": [low, high]}}),
        subject="cell",
        model_name="ude",
    )
    return idata


def test_network_output_is_evaluated_over_the_fitted_voltage_range(built):
    idata = _symmetric_chains_fit(built, num_draws=20)
    network = built.networks["g"]

    outputs = network_output_draws(idata)["g"]

    assert outputs.dims == ("chain", "draw", "g_point", "g_output")
    voltages = outputs["V"].values
    low = network.input_centres[0] - network.input_half_widths[0]
    assert voltages[0] == pytest.approx(low)
    weights = idata.posterior["g_weights"].values[2, 5]
    expected = float(network(jnp.asarray(weights), jnp.asarray(voltages[7]))[0])
    assert float(outputs.values[2, 5, 7, 0]) == pytest.approx(expected, rel=1e-12)


def test_symmetric_weights_are_labelled_not_failed_when_functions_agree(built):
    verdict = convergence_verdict(_symmetric_chains_fit(built))

    assert verdict["max_rhat_network_weights"] > 1.5
    assert verdict["network_weights"] == "not identifiable by symmetry"
    assert verdict["max_rhat_network_output"] < 1.01
    assert verdict["converged"] is True
    assert "g_weights" not in verdict["problems"]


def test_chains_with_different_network_functions_are_not_converged(built):
    idata = _symmetric_chains_fit(built)
    weights = idata.posterior["g_weights"].values.copy()
    weights[3] = -weights[3]  # a different function, not a symmetry: the biases flip
    idata.posterior["g_weights"] = (("chain", "draw", "g_weight"), weights)

    verdict = convergence_verdict(idata)

    assert verdict["max_rhat_network_output"] > 1.1
    assert verdict["converged"] is False
    assert "on the output of network g" in verdict["problems"]


@pytest.mark.slow
def test_ude_fit_converges_on_functions_while_weights_are_symmetric():
    idata = bayesude.fit(
        _spec(),
        _recording(),
        num_chains=4,
        num_warmup=500,
        num_samples=500,
        seed=3,
        progress_bar=False,
        subject="cell",
        model_name="ude",
    )

    verdict = convergence_verdict(idata)

    # Right values of the case: R-hat below 1.05 on g(V) over the fitted range
    # and on the predicted V(t) at the observation times.
    assert verdict["max_rhat_network_output"] < 1.05
    assert verdict["max_rhat_trajectories"] < 1.05
    assert verdict["network_weights"] == "not identifiable by symmetry"
    grid = network_output_draws(idata)["g"]
    inside = (grid["V"].values >= -70.0) & (grid["V"].values <= -50.0)
    assert inside.sum() >= 5
    assert jax.numpy.isfinite(grid.values).all()
