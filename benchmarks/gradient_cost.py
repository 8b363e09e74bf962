"""Cost of one log-density gradient, measured alone, and the floor under it.

The floor is what the right-hand-side evaluations of one solve and its
forward sensitivities cost when nothing else is paid: the number of
vector-field evaluations the solver makes on the reference problem (from
Diffrax's step counts, rejected steps included) times the cost of one
evaluation of the vector field with one tangent per ODE parameter, measured
in throughput (a million evaluations vectorised, so no loop overhead).
"""

from __future__ import annotations

import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import reference_problem as problem
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy, unconstrain_fn

#: New vector-field evaluations per Tsit5 step (7 stages, the first reused).
TSIT5_EVALUATIONS_PER_STEP = 6
#: ODE parameters whose sensitivities a gradient needs (a, b, tau).
NUM_ODE_PARAMETERS = 3
REPEATS = 30


def milliseconds_per_call(function, *arguments) -> float:
    """Median wall time of a compiled call, in ms."""
    function = jax.jit(function)
    jax.block_until_ready(function(*arguments))
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        jax.block_until_ready(function(*arguments))
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def gradient_ms_per_chain(model, model_args, num_chains, forward_mode, values=None):
    """ms per chain of one log-density gradient, for ``num_chains`` chains vmapped.

    Evaluated at the data-generating parameters with noise 0.1 (close to
    the posterior), as NUTS does it: ``jacfwd`` in forward mode, ``grad``
    otherwise.
    """
    values = values or {**problem.TRUTH, "sigma_v": 0.1, "sigma_w": 0.1}
    values = {name: jnp.asarray(value) for name, value in values.items()}
    flat, unravel = ravel_pytree(unconstrain_fn(model, model_args, {}, values))

    def potential(x):
        return potential_energy(model, model_args, {}, unravel(x))

    gradient = jax.jacfwd(potential) if forward_mode else jax.grad(potential)
    chains = jnp.stack([flat] * num_chains)
    return milliseconds_per_call(jax.vmap(gradient), chains) / num_chains


def _vector_field(t, y, args):
    a, b, tau = args
    v, w = y[..., 0], y[..., 1]
    return jnp.stack([v - v**3 / 3.0 - w + problem.I_EXT, (v + a - b * w) / tau], -1)


def solver_evaluations(times: np.ndarray) -> dict[str, int]:
    """Steps of one reference solve at the true values and the evaluations they cost."""
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=None,
        y0=jnp.asarray(problem.Y0),
        args=tuple(jnp.asarray(problem.TRUTH[k]) for k in ("a", "b", "tau")),
        saveat=diffrax.SaveAt(ts=jnp.asarray(times)),
        stepsize_controller=diffrax.PIDController(rtol=problem.RTOL, atol=problem.ATOL),
        max_steps=problem.MAX_STEPS,
    )
    steps = int(solution.stats["num_steps"])
    # Two extra evaluations choose the first step (dt0=None).
    return {
        "num_steps": steps,
        "num_rejected_steps": int(solution.stats["num_rejected_steps"]),
        "num_evaluations": TSIT5_EVALUATIONS_PER_STEP * steps + 1 + 2,
    }


def nanoseconds_per_evaluation(batch: int = 1_000_000) -> float:
    """Throughput cost of the vector field with one tangent per ODE parameter."""
    key_y, key_t = jax.random.split(jax.random.key(0))
    y = jax.random.normal(key_y, (batch, 2))
    params = tuple(jnp.asarray(problem.TRUTH[k]) for k in ("a", "b", "tau"))
    basis = jnp.eye(NUM_ODE_PARAMETERS)
    y_tangents = jax.random.normal(key_t, (NUM_ODE_PARAMETERS, batch, 2))

    def with_sensitivities(y, y_tangents):
        def along(y_tangent, direction):
            p_tangent = tuple(direction[i] for i in range(NUM_ODE_PARAMETERS))
            return jax.jvp(
                lambda y, p: _vector_field(0.0, y, p),
                (y, params),
                (y_tangent, p_tangent),
            )

        values, tangents = jax.vmap(along)(y_tangents, basis)
        return values[0], tangents

    return 1e6 * milliseconds_per_call(with_sensitivities, y, y_tangents) / batch


def floor_estimate(num_times: int) -> dict[str, float]:
    """The floor of one solve and gradient on this CPU, with its parts."""
    times, _, _ = problem.simulate(num_times)
    counts = solver_evaluations(times)
    per_evaluation_ns = nanoseconds_per_evaluation()
    return {
        **counts,
        "ns_per_evaluation_with_sensitivities": per_evaluation_ns,
        "floor_ms_per_gradient": counts["num_evaluations"] * per_evaluation_ns * 1e-6,
    }
