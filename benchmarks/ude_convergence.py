"""Convergence of a Bayesian UDE: bayesude's defaults beside a plain NumPyro model.

The reference problem is FitzHugh–Nagumo with its cubic term ``v - v**3/3``
replaced by a tanh MLP (1→8→8→1, 97 weights), unknown ``a``, ``b``, ``tau``
and noise, and 100 noisy observations of each of ``v`` and ``w`` (200 in all).
Two fits run side by side in this process:

- **baseline**: a plain NumPyro + diffrax model, every weight Normal(0, 1),
  NUTS from NumPyro's default start (2 chains × 150 warm-up + 150 draws,
  maximum tree depth 7);
- **bayesude**: ``bayesude.fit`` with its default sampler settings (4 chains ×
  500 + 500, maximum tree depth 10) and the start chosen by ``--init``
  (``laplace`` unless told otherwise).

For each it prints wall time, divergences, R-hat and bulk ESS of the
mechanistic parameters, R-hat of the learned term on a grid over the visited
range of ``v``, whether the 90% band of the learned term covers the true cubic
there, and whether the 90% intervals of ``a``, ``b`` and ``tau`` hold their
true values. Targets (bayesude, 4 chains): R-hat < 1.01 for the parameters
and the learned term, no divergences, bulk ESS ≥ 400, full coverage, within
10 minutes on a 2-core CPU.

Usage::

    .venv/bin/python benchmarks/ude_convergence.py            # both fits
    .venv/bin/python benchmarks/ude_convergence.py --skip-baseline --init svi
    .venv/bin/python benchmarks/ude_convergence.py --reduced  # the test's size
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

import arviz as az
import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import xarray as xr
from jax.flatten_util import ravel_pytree
from numpyro.infer import MCMC, NUTS

import bayesude
from bayesude.inference.fit import INITIALISATIONS
from bayesude.learned_terms import learned_term_draws

TRUTH = {"a": 0.7, "b": 0.8, "tau": 12.5}
I_EXT = 0.5
INITIAL_STATE = {"v": -1.0, "w": 1.0}
MECHANISTIC = ("a", "b", "tau")


@dataclasses.dataclass(frozen=True)
class ReferenceProblem:
    """Size of the reference problem: network, observations, noise."""

    width: int = 8
    depth: int = 2
    num_times: int = 100
    t_end: float = 60.0
    noise: float = 0.1
    seed: int = 0


FULL = ReferenceProblem()
REDUCED = ReferenceProblem(width=4, depth=1, num_times=50)


def true_cubic(v: np.ndarray) -> np.ndarray:
    """The term the network replaces, ``f(v) = v - v**3/3``."""
    return v - v**3 / 3.0


def _fitzhugh_nagumo(t, y, args):
    v, w = y[..., 0], y[..., 1]
    f, a, b, tau = args
    return jnp.stack([f(v) - w + I_EXT, (v + a - b * w) / tau], axis=-1)


def _solve(f, a, b, tau, times, rtol=1e-6, atol=1e-8):
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(_fitzhugh_nagumo),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=None,
        y0=jnp.array([INITIAL_STATE["v"], INITIAL_STATE["w"]]),
        args=(f, a, b, tau),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=4096,
        throw=False,
    )
    return solution.ys, solution.result == diffrax.RESULTS.successful


def reference_data(problem: ReferenceProblem = FULL) -> xr.Dataset:
    """Noisy observations of ``v`` and ``w``, dims ``(sweep, time)``, one sweep."""
    times = jnp.linspace(0.0, problem.t_end, problem.num_times)
    states, _ = _solve(
        true_cubic, TRUTH["a"], TRUTH["b"], TRUTH["tau"], times, 1e-10, 1e-12
    )
    rng = np.random.default_rng(problem.seed)
    noisy = np.asarray(states) + problem.noise * rng.standard_normal(states.shape)
    attributes = {"units": "1", "role": "observed"}
    return xr.Dataset(
        {
            name: (("sweep", "time"), noisy[None, :, i], attributes)
            for i, name in enumerate(("v", "w"))
        },
        coords={"sweep": [0], "time": ("time", np.asarray(times), {"units": "1"})},
    )


def visited_grid(data: xr.Dataset, num_points: int = 21) -> np.ndarray:
    """Points over the range of ``v`` the observations visit."""
    v = data["v"].values
    return np.linspace(np.nanmin(v), np.nanmax(v), num_points)


def bayesude_specification(problem: ReferenceProblem) -> bayesude.ModelSpecification:
    """The reference problem as a bayesude specification."""
    return bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v", "w": "w"},
        fixed={"I_ext": I_EXT},
        initial_state=INITIAL_STATE,
        neural_terms=(
            bayesude.NeuralTerm(
                "cubic_network",
                replaces="cubic_nonlinearity",
                width=problem.width,
                depth=problem.depth,
            ),
        ),
    )


def run_bayesude(
    problem: ReferenceProblem,
    num_chains: int,
    seed: int,
    init: str,
    progress_bar: bool = False,
) -> dict:
    """Fit with bayesude's default sampler settings and ``init``; the measurements."""
    data = reference_data(problem)
    spec = bayesude_specification(problem)
    started, cpu_started = time.perf_counter(), time.process_time()
    idata = bayesude.fit(
        spec,
        data,
        num_chains=num_chains,
        seed=seed,
        init=init,
        progress_bar=progress_bar,
        num_trajectory_draws=10,
    )
    wall_time = time.perf_counter() - started
    cpu_time = time.process_time() - cpu_started
    grid = visited_grid(data)
    term = learned_term_draws(idata, data, "cubic_network", {"v": grid}).values
    return _measurements(
        {name: idata.posterior[name].values for name in MECHANISTIC},
        term,
        grid,
        int(idata.sample_stats.diverging.sum()),
        (wall_time, cpu_time),
        idata.sample_stats.tree_depth.values,
    )


def run_baseline(
    problem: ReferenceProblem, num_chains: int, num_warmup: int, num_samples: int
) -> dict:
    """The plain NumPyro + diffrax UDE sampled with NUTS; returns the measurements."""
    data = reference_data(problem)
    times = jnp.asarray(data["time"].values)
    observed = jnp.stack([jnp.asarray(data[n].values[0]) for n in ("v", "w")], -1)
    mlp = eqx.nn.MLP(
        1, 1, problem.width, problem.depth, jnp.tanh, key=jax.random.key(0)
    )
    arrays, static = eqx.partition(mlp, eqx.is_array)
    flat, unravel = ravel_pytree(arrays)

    def network(weights):
        combined = eqx.combine(unravel(weights), static)
        return lambda v: jax.vmap(lambda x: combined(x[None])[0])(jnp.atleast_1d(v))[0]

    def model():
        a = numpyro.sample("a", dist.Normal(0.7, 0.3))
        b = numpyro.sample("b", dist.Normal(0.8, 0.3))
        tau = numpyro.sample("tau", dist.LogNormal(2.5, 0.5))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        weights = numpyro.sample(
            "weights", dist.Normal(0.0, 1.0).expand([flat.size]).to_event(1)
        )
        states, solved = _solve(network(weights), a, b, tau, times)
        numpyro.factor("solver_failure", jnp.where(solved, 0.0, -jnp.inf))
        numpyro.sample(
            "y", dist.Normal(jnp.where(solved, states, 0.0), sigma), obs=observed
        )

    mcmc = MCMC(
        NUTS(model, max_tree_depth=7),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    mcmc.run(jax.random.key(0), extra_fields=("diverging", "num_steps"))
    timings = (time.perf_counter() - started, time.process_time() - cpu_started)

    samples = mcmc.get_samples(group_by_chain=True)
    grid = visited_grid(data)
    evaluate = jax.vmap(jax.vmap(lambda w: jax.vmap(network(w))(jnp.asarray(grid))))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return _measurements(
        {name: np.asarray(samples[name]) for name in MECHANISTIC},
        np.asarray(evaluate(samples["weights"])),
        grid,
        int(np.asarray(extra["diverging"]).sum()),
        timings,
        np.floor(np.log2(np.asarray(extra["num_steps"]))),
    )


def _measurements(parameters, term, grid, divergences, times, tree_depth) -> dict:
    """The benchmark's figures from draws ``(chain, draw, ...)``.

    ``times`` is ``(wall, cpu)`` in seconds: on a shared machine the CPU time
    of this process says more about the cost than the wall time.
    """
    posterior = xr.Dataset(
        {
            **{name: (("chain", "draw"), value) for name, value in parameters.items()},
            "term": (("chain", "draw", "grid"), term),
        }
    )
    rhat = az.rhat(posterior)
    ess = az.ess(posterior[list(parameters)], method="bulk")
    pooled = term.reshape(-1, grid.size)
    low, high = np.quantile(pooled, [0.05, 0.95], axis=0)
    truth = true_cubic(grid)
    rms_error = np.sqrt(np.mean((np.median(pooled, axis=0) - truth) ** 2))
    intervals = {
        name: np.quantile(value, [0.05, 0.95]) for name, value in parameters.items()
    }
    return {
        "wall_time_s": round(times[0], 1),
        "cpu_time_s": round(times[1], 1),
        "divergences": divergences,
        "max_rhat_parameters": round(max(float(rhat[n]) for n in parameters), 4),
        "max_rhat_learned_term": round(float(rhat["term"].max()), 4),
        "min_ess_bulk_parameters": round(min(float(ess[n]) for n in parameters)),
        "learned_term_coverage": float(np.mean((low <= truth) & (truth <= high))),
        "learned_term_rms_error": round(float(rms_error), 4),
        "parameters_covered": {
            name: bool(low_ <= TRUTH[name] <= high_)
            for name, (low_, high_) in intervals.items()
        },
        "mean_tree_depth": round(float(np.mean(tree_depth)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="the test's size")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-bayesude", action="store_true")
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default="laplace", choices=INITIALISATIONS)
    parser.add_argument("--progress-bar", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    problem = REDUCED if args.reduced else FULL

    results = {"problem": dataclasses.asdict(problem)}
    if not args.skip_bayesude:
        results["bayesude"] = run_bayesude(
            problem, args.num_chains, args.seed, args.init, args.progress_bar
        )
        print(json.dumps(results, indent=2), flush=True)
    if not args.skip_baseline:
        results["baseline"] = run_baseline(problem, 2, 150, 150)
        print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
