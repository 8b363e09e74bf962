"""Hand-written NumPyro models of the benchmark problems, as a user would write them.

Two solvers: Diffrax (``Tsit5``, PID step-size controller, saving at the
observation times, Diffrax's default reverse-mode adjoint) and JAX's own
``jax.experimental.ode.odeint`` (Dopri5, adjoint by solving backwards). Both
use the priors, tolerances and step budget of :mod:`reference_problem`.

:func:`run_nuts` runs any of them with NumPyro's ``MCMC`` (vectorised chains);
:func:`run_nuts_per_subject` runs independent NUTS fits of many subjects, each
with its own chains, step size and mass matrix, vmapped in one compiled
program.
"""

from __future__ import annotations

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import reference_problem as problem
from jax.experimental.ode import odeint
from numpyro.infer import MCMC, NUTS
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

jax.config.update("jax_enable_x64", True)

#: Hidden units of the network replacing the cubic term in the UDE variant.
UDE_WIDTH = 4


def _mechanistic_parameters():
    a = numpyro.sample("a", dist.Normal(0.7, 0.3))
    b = numpyro.sample("b", dist.Normal(0.8, 0.3))
    tau = numpyro.sample("tau", dist.LogNormal(2.5, 0.5))
    return a, b, tau


def _observe(v_hat, w_hat, v_obs, w_obs):
    sigma_v = numpyro.sample("sigma_v", dist.HalfNormal(problem.NOISE_PRIOR_SCALE))
    sigma_w = numpyro.sample("sigma_w", dist.HalfNormal(problem.NOISE_PRIOR_SCALE))
    numpyro.sample("v", dist.Normal(v_hat, sigma_v), obs=v_obs)
    numpyro.sample("w", dist.Normal(w_hat, sigma_w), obs=w_obs)


def _diffrax_solve(vector_field, times, args, adjoint=None):
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=None,
        y0=jnp.asarray(problem.Y0),
        args=args,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=problem.RTOL, atol=problem.ATOL),
        adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint(),
        max_steps=problem.MAX_STEPS,
        throw=False,
    )
    return solution.ys


def _fitzhugh_nagumo(t, y, args):
    a, b, tau = args
    v, w = y[0], y[1]
    return jnp.stack([v - v**3 / 3.0 - w + problem.I_EXT, (v + a - b * w) / tau])


def diffrax_model(times, v_obs, w_obs):
    """The reference problem with a Diffrax solve."""
    a, b, tau = _mechanistic_parameters()
    ys = _diffrax_solve(_fitzhugh_nagumo, times, (a, b, tau))
    _observe(ys[:, 0], ys[:, 1], v_obs, w_obs)


def odeint_model(times, v_obs, w_obs):
    """The reference problem with ``jax.experimental.ode.odeint``."""
    a, b, tau = _mechanistic_parameters()

    def vector_field(y, t, a, b, tau):
        return _fitzhugh_nagumo(t, y, (a, b, tau))

    ys = odeint(
        vector_field,
        jnp.asarray(problem.Y0),
        times,
        a,
        b,
        tau,
        rtol=problem.RTOL,
        atol=problem.ATOL,
        mxstep=problem.MAX_STEPS,
    )
    _observe(ys[:, 0], ys[:, 1], v_obs, w_obs)


def ude_weight_prior_scales(width: int = UDE_WIDTH) -> np.ndarray:
    """Prior scales of a 1 → width → 1 network's weights, in Equinox's order.

    Order: first-layer weights, first-layer biases, output weights, output
    bias; weights get ``1 / sqrt(fan_in)`` and biases 1, as bayesude does.
    """
    return np.concatenate(
        [np.ones(width), np.ones(width), np.full(width, 1 / math.sqrt(width)), [1.0]]
    )


def diffrax_ude_model(times, v_obs, w_obs, v_range, width: int = UDE_WIDTH):
    """The reference problem with the cubic term replaced by a small network.

    The network reads ``v`` mapped to [-1, 1] over ``v_range`` (the data's range).
    """
    a, b, tau = _mechanistic_parameters()
    weights = numpyro.sample(
        "cubic_network_weights",
        dist.Normal(0.0, jnp.asarray(ude_weight_prior_scales(width))).to_event(1),
    )
    w1, b1 = weights[:width], weights[width : 2 * width]
    w2, b2 = weights[2 * width : 3 * width], weights[3 * width]
    centre, half_width = (v_range[0] + v_range[1]) / 2, (v_range[1] - v_range[0]) / 2

    def vector_field(t, y, args):
        v, w = y[0], y[1]
        hidden = jnp.tanh(w1 * ((v - centre) / half_width) + b1)
        cubic = jnp.dot(w2, hidden) + b2
        return jnp.stack([cubic - w + problem.I_EXT, (v + a - b * w) / tau])

    ys = _diffrax_solve(vector_field, times, None)
    _observe(ys[:, 0], ys[:, 1], v_obs, w_obs)


def unconstrained_starts(model, model_args, starts, extra=None) -> dict:
    """Per-chain starting points in unconstrained space, stacked over chains."""
    chains = [
        unconstrain_fn(
            model,
            model_args,
            {},
            {k: jnp.asarray(v) for k, v in {**start, **(extra or {})}.items()},
        )
        for start in starts
    ]
    return jax.tree.map(lambda *values: jnp.stack(values), *chains)


def run_nuts(model, model_args, size, starts, clock, seed=0, forward_mode=False):
    """NUTS with vectorised chains; returns draws and timing in the record's terms."""
    kernel = NUTS(model, forward_mode_differentiation=forward_mode)
    mcmc = MCMC(
        kernel,
        num_warmup=size.num_warmup,
        num_samples=size.num_samples,
        num_chains=size.num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    compiled_before = clock.seconds
    with problem.stopwatch() as wall:
        mcmc.warmup(
            jax.random.key(seed),
            *model_args,
            init_params=starts,
            extra_fields=("num_steps",),
            collect_warmup=True,
        )
        warmup_steps = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
        mcmc.run(
            mcmc.post_warmup_state.rng_key,
            *model_args,
            extra_fields=("num_steps", "diverging"),
        )
        draws = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(draws)
    cpu_s = problem.cpu_seconds()
    extra = mcmc.get_extra_fields()
    return {
        "draws": {k: np.asarray(v) for k, v in draws.items()},
        "wall_s": wall["s"],
        "compile_s": clock.seconds - compiled_before,
        "num_gradients": warmup_steps + int(np.sum(extra["num_steps"])),
        "divergences": int(np.sum(extra["diverging"])),
        "cpu_s": cpu_s,
    }


def per_subject_sampler(model, size):
    """Independent NUTS fits of many subjects, as one compiled function.

    Parameters
    ----------
    model
        NumPyro model taking one subject's arrays as positional arguments.
    size
        Chains, warm-up and draws (per subject).

    Returns
    -------
    callable
        ``sample(keys, starts, subject_args) -> (z, num_steps, diverging)``, with
        ``keys`` of shape ``(subject, chain)``, ``starts`` the unconstrained
        starting points ``{site: (chain, ...)}`` shared by every subject, and
        ``subject_args`` a tuple of arrays with a leading subject axis. ``z``
        holds every transition's unconstrained draw ``{site: (subject, chain,
        transition, ...)}``; leapfrog steps and divergences have shape
        ``(subject, chain, transition)``. Each subject's chains adapt their
        own step size and mass matrix.
    """

    def potential_fn_gen(*args):
        return lambda z: potential_energy(model, args, {}, z)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
    num_transitions = size.num_warmup + size.num_samples

    def one_chain(key, z0, args):
        state = init_kernel(
            z0, size.num_warmup, model_args=args, rng_key=key, max_tree_depth=10
        )

        def transition(state, _):
            state = sample_kernel(state, model_args=args)
            return state, (state.z, state.num_steps, state.diverging)

        _, trace = jax.lax.scan(transition, state, None, length=num_transitions)
        return trace

    chains = jax.vmap(one_chain, in_axes=(0, 0, None))
    return jax.jit(jax.vmap(chains, in_axes=(0, None, 0)))


def run_nuts_per_subject(model, subject_args, size, starts, seed=0):
    """Run :func:`per_subject_sampler` once; kept draws constrained.

    Returns
    -------
    draws, num_steps, diverging
        ``{site: (subject, chain, draw, ...)}`` of the kept draws; leapfrog
        steps and divergences, shape ``(subject, chain, warm-up + draws)``.
    """
    num_subjects = jax.tree.leaves(subject_args)[0].shape[0]
    keys = jax.random.split(jax.random.key(seed), (num_subjects, size.num_chains))
    sample = per_subject_sampler(model, size)
    z, num_steps, diverging = sample(keys, starts, subject_args)
    first = jax.tree.map(lambda x: x[0], subject_args)
    constrained = jax.vmap(
        jax.vmap(jax.vmap(lambda z: constrain_fn(model, first, {}, z)))
    )(jax.tree.map(lambda x: x[:, :, size.num_warmup :], z))
    return (
        {k: np.asarray(v) for k, v in constrained.items()},
        np.asarray(num_steps),
        np.asarray(diverging),
    )
