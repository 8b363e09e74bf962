"""UDE posteriors: network symmetries, and convergence judged on the learned function.

The reference problem is FitzHugh–Nagumo with its cubic term replaced by a
network, ``a``, ``b`` and ``tau`` unknown, and both states observed with noise.
The reduced version uses a 1→4→1 network and 50 observation times, the full
one a 1→8→8→1 network and 100 times; both are marked slow for now.
"""

import dataclasses

import arviz as az
import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy, unconstrain_fn

import bayesude
from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data
from bayesude.learned_terms import learned_term_draws

TRUTH = {"a": 0.7, "b": 0.8, "tau": 12.5}
I_EXT = 0.5
INITIAL_STATE = {"v": -1.0, "w": 1.0}


def _cubic(v):
    return v - v**3 / 3.0


def _fitzhugh_nagumo_recording(num_times, t_end=60.0, noise=0.1, seed=0):
    """Noisy ``v`` and ``w`` of the classic limit cycle, dims ``(sweep, time)``."""

    def vector_field(t, y, args):
        v, w = y
        return jnp.stack(
            [_cubic(v) - w + I_EXT, (v + TRUTH["a"] - TRUTH["b"] * w) / TRUTH["tau"]]
        )

    times = np.linspace(0.0, t_end, num_times)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5(),
        t0=0.0,
        t1=t_end,
        dt0=None,
        y0=jnp.array([INITIAL_STATE["v"], INITIAL_STATE["w"]]),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
    )
    rng = np.random.default_rng(seed)
    noisy = np.asarray(solution.ys) + noise * rng.standard_normal((num_times, 2))
    attributes = {"units": "1", "role": "observed"}
    return xr.Dataset(
        {
            name: (("sweep", "time"), noisy[None, :, i], attributes)
            for i, name in enumerate(("v", "w"))
        },
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )


def _specification(width, depth):
    return bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v", "w": "w"},
        fixed={"I_ext": I_EXT},
        initial_state=INITIAL_STATE,
        neural_terms=(
            bayesude.NeuralTerm(
                "cubic_network",
                replaces="cubic_nonlinearity",
                width=width,
                depth=depth,
            ),
        ),
    )


def _check_learned_term_and_parameters(idata, data, max_rhat):
    """The learned term covers the cubic, and chains agree on it and on a, b, tau."""
    v = data["v"].values
    grid = np.linspace(v.min(), v.max(), 21)
    term = learned_term_draws(idata, data, "cubic_network", {"v": grid})
    rhat_term = az.rhat(term.to_dataset())["cubic_network"].values
    assert rhat_term.max() < max_rhat, f"R-hat of the learned term: {rhat_term}"

    low, high = term.quantile([0.05, 0.95], dim=("chain", "draw")).values
    truth = _cubic(grid)
    missed = grid[(truth < low) | (truth > high)]
    assert missed.size == 0, f"90% band misses the true cubic at v = {missed}"

    rhat = az.rhat(idata, var_names=list(TRUTH))
    for name, value in TRUTH.items():
        low, high = np.quantile(idata.posterior[name].values, [0.05, 0.95])
        assert low <= value <= high, f"{name}: [{low:.3f}, {high:.3f}] misses {value}"
        assert float(rhat[name]) < max_rhat, f"R-hat of {name}: {float(rhat[name])}"
    assert int(idata.sample_stats.diverging.sum()) == 0


@pytest.fixture(scope="module")
def small_recording():
    return _fitzhugh_nagumo_recording(num_times=50)


def test_hidden_unit_permutation_and_sign_flip_leave_the_log_density_unchanged(
    small_recording,
):
    spec = _specification(width=4, depth=1)
    spec = dataclasses.replace(
        spec, solver=bayesude.SolverSettings(adjoint="recursive_checkpoint")
    )
    built = build_model(spec, prepare_data(spec, small_recording, "subject"))
    network = built.networks["cubic_network"]
    weights = 0.7 * jax.random.normal(jax.random.key(0), (network.num_weights,))

    # Reorder the hidden units, and flip two of them: tanh is odd, so negating a
    # unit's input weights, bias and output weight together changes nothing.
    order = jnp.array([2, 0, 3, 1])
    signs = jnp.array([1.0, -1.0, 1.0, -1.0])
    arrays = network._unravel(weights)
    hidden, output = arrays.layers
    arrays = eqx.tree_at(
        lambda mlp: (mlp.layers[0].weight, mlp.layers[0].bias, mlp.layers[1].weight),
        arrays,
        (
            hidden.weight[order] * signs[:, None],
            hidden.bias[order] * signs,
            output.weight[:, order] * signs[None, :],
        ),
    )
    transformed, _ = ravel_pytree(arrays)
    assert not np.allclose(transformed, weights)

    values = {"a": 0.6, "b": 0.9, "tau": 11.0, "sigma_v": 0.2, "sigma_w": 0.2}

    def potential(w):
        z = unconstrain_fn(built.model, (), {}, {**values, "cubic_network_weights": w})
        return float(potential_energy(built.model, (), {}, z))

    assert abs(potential(transformed) - potential(weights)) < 1e-10


# Not yet in the default suite: on a shared 2-core machine this fit did not
# finish warm-up within the suite's budget (docs/ude_convergence.md).
@pytest.mark.slow
def test_reduced_reference_problem_converges_on_the_learned_function(
    small_recording,
):
    idata = bayesude.fit(
        _specification(width=4, depth=1),
        small_recording,
        num_chains=4,
        num_warmup=150,
        num_samples=150,
        seed=0,
        init="laplace",
        progress_bar=False,
        num_trajectory_draws=5,
    )
    _check_learned_term_and_parameters(idata, small_recording, max_rhat=1.05)


@pytest.mark.slow
def test_reference_problem_converges_on_the_learned_function():
    data = _fitzhugh_nagumo_recording(num_times=100)
    idata = bayesude.fit(
        _specification(width=8, depth=2),
        data,
        num_chains=4,
        seed=0,
        init="laplace",
        progress_bar=False,
        num_trajectory_draws=5,
    )
    _check_learned_term_and_parameters(idata, data, max_rhat=1.01)
    ess = az.ess(idata, var_names=list(TRUTH), method="bulk")
    assert min(float(ess[name]) for name in TRUTH) >= 400


def test_learned_term_draws_evaluate_each_draw_and_name_missing_inputs(
    small_recording,
):
    spec = _specification(width=4, depth=1)
    idata = bayesude.fit(
        spec, small_recording, method="map", svi_steps=50, progress_bar=False
    )
    grid = np.linspace(-2.0, 2.0, 7)
    term = learned_term_draws(idata, small_recording, "cubic_network", {"v": grid})
    assert term.dims == ("chain", "draw", "point")
    assert term.shape == (1, 1, 7)

    network = build_model(
        spec, prepare_data(spec, small_recording, "subject")
    ).networks["cubic_network"]
    weights = idata.posterior["cubic_network_weights"].values[0, 0]
    expected = [float(network(jnp.asarray(weights), v)[0]) for v in grid]
    np.testing.assert_allclose(term.values[0, 0], expected, rtol=1e-12)

    with pytest.raises(ValueError, match=r"missing \['v'\]"):
        learned_term_draws(idata, small_recording, "cubic_network", {"w": grid})
    with pytest.raises(ValueError, match="no neural term 'other'"):
        learned_term_draws(idata, small_recording, "other", {"v": grid})
