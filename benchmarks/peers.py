"""One peer fitting one benchmark variant, in this process, as one record."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import reference_problem as problem

#: Spread of the subjects' parameters around the reference values (batch).
SUBJECT_SPREAD = {"a": 0.05, "b": 0.05, "tau": 1.0}


def run_peer(peer: str, variant: str, size_name: str) -> dict:
    """Fit ``variant`` with ``peer`` at size ``size_name``; the JSON-ready record."""
    size = problem.SIZES[size_name]
    clock = problem.CompileClock()
    runner = {
        "reference": _reference,
        "ude": _ude,
        "batch": _batch,
    }[variant]
    cpu_before = problem.cpu_seconds()
    result, extra = runner(peer, size, clock)
    if "cpu_s" in result:
        result["cpu_s"] -= cpu_before
        extra["cpu_s"] = result["cpu_s"]
    line = problem.record(
        peer,
        variant,
        result["draws"],
        wall_s=result["wall_s"],
        compile_s=result["compile_s"],
        num_gradients=result["num_gradients"],
        divergences=result["divergences"],
        ess_multiplier=result.get("ess_multiplier", 1),
        extra={
            **extra,
            **{k: result[k] for k in ("assembly_s", "solver_failures") if k in result},
            "size": dataclasses.asdict(size),
        },
    )
    if "cpu_s" in result:
        line["ess_per_cpu_s_with_compile"] = (
            line["ess_per_s_with_compile"] * line["wall_s"] / result["cpu_s"]
        )
    return line


def _reference(peer, size, clock):
    import gradient_cost

    times, v, w = problem.simulate(size.num_times)
    starts = problem.starting_points(size.num_chains)
    if peer == "stan":
        from stan_peer import fit_stan

        return fit_stan(size), {}
    if peer == "bayesude":
        import bayesude_peer

        result = bayesude_peer.fit_bayesude(
            bayesude_peer.specification(),
            problem.as_dataset(times, v, w),
            size,
            clock,
            starts,
        )
        model, args, forward = _bayesude_model(bayesude_peer.specification(), times)
        extra = gradient_cost.floor_estimate(size.num_times)
    else:
        import jax_peers

        model = {
            "numpyro_diffrax": jax_peers.diffrax_model,
            "numpyro_odeint": jax_peers.odeint_model,
        }[peer]
        args, forward = (jnp.asarray(times), jnp.asarray(v), jnp.asarray(w)), False
        result = jax_peers.run_nuts(
            model,
            args,
            size,
            jax_peers.unconstrained_starts(model, args, starts),
            clock,
        )
        extra = {}
    extra["isolated_ms_per_gradient"] = gradient_cost.gradient_ms_per_chain(
        model, args, size.num_chains, forward
    )
    if "floor_ms_per_gradient" in extra:
        extra["gradient_over_floor"] = (
            extra["isolated_ms_per_gradient"] / extra["floor_ms_per_gradient"]
        )
    return result, extra


def _bayesude_model(spec, times):
    """bayesude's own NumPyro model of the reference data, with its resolved adjoint."""
    from bayesude.inference.model import build_model
    from bayesude.inference.prepared_data import prepare_data

    _, v, w = problem.simulate(len(times))
    prepared = prepare_data(spec, problem.as_dataset(times, v, w), "subject")
    num_parameters = sum(build_model(spec, prepared).latent_sizes.values())
    solver = spec.solver.resolved(num_parameters, sampler_uses_forward_mode=True)
    spec = dataclasses.replace(spec, solver=solver)
    return build_model(spec, prepared).model, (), solver.adjoint == "forward"


def _ude_starts(num_chains, width, seed=2):
    rng = np.random.default_rng(seed)
    weights = 0.1 * rng.standard_normal((num_chains, 3 * width + 1))
    return [
        {**start, "cubic_network_weights": weights[chain]}
        for chain, start in enumerate(problem.starting_points(num_chains))
    ]


def _ude(peer, size, clock):
    import jax_peers

    times, v, w = problem.simulate(size.num_times)
    starts = _ude_starts(size.num_chains, jax_peers.UDE_WIDTH)
    if peer == "bayesude":
        import bayesude_peer

        spec = bayesude_peer.specification(ude=True, width=jax_peers.UDE_WIDTH)
        result = bayesude_peer.fit_bayesude(
            spec, problem.as_dataset(times, v, w), size, clock, starts
        )
        return result, {}
    args = (
        jnp.asarray(times),
        jnp.asarray(v),
        jnp.asarray(w),
        (float(v.min()), float(v.max())),
    )
    model = jax_peers.diffrax_ude_model
    result = jax_peers.run_nuts(
        model, args, size, jax_peers.unconstrained_starts(model, args, starts), clock
    )
    return result, {}


def subjects(size) -> list[dict[str, float]]:
    """Each batch subject's true parameters, around the reference values."""
    rng = np.random.default_rng(problem.DATA_SEED)
    return [
        {
            k: problem.TRUTH[k] + spread * rng.standard_normal()
            for k, spread in SUBJECT_SPREAD.items()
        }
        for _ in range(size.num_subjects)
    ]


def batch_data(size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, v and w of every subject, shape ``(subject, time)``."""
    simulated = [
        problem.simulate(size.num_times, params, seed=problem.DATA_SEED + i)
        for i, params in enumerate(subjects(size))
    ]
    return tuple(np.stack(arrays) for arrays in zip(*simulated))


def _batch(peer, size, clock):
    times, v, w = batch_data(size)
    starts = problem.starting_points(size.num_chains)
    if peer == "bayesude":
        return _batch_bayesude(times, v, w, size, clock, starts), {}

    import jax_peers

    args = (jnp.asarray(times), jnp.asarray(v), jnp.asarray(w))
    first = tuple(a[0] for a in args)
    z0 = jax_peers.unconstrained_starts(jax_peers.diffrax_model, first, starts)
    compiled_before = clock.seconds
    with problem.stopwatch() as wall:
        draws, num_steps, diverging = jax_peers.run_nuts_per_subject(
            jax_peers.diffrax_model, args, size, z0
        )
    kept = slice(size.num_warmup, None)
    return {
        # (subject, chain, draw) -> (chain, draw, subject)
        "draws": {k: np.moveaxis(draws[k], 0, -1) for k in problem.PARAMETERS},
        "wall_s": wall["s"],
        "compile_s": clock.seconds - compiled_before,
        "num_gradients": int(num_steps.sum()),
        "divergences": int(diverging[:, :, kept].sum()),
        "ess_multiplier": size.num_subjects,
    }, {}


def _batch_bayesude(times, v, w, size, clock, starts) -> dict:
    import bayesude_peer

    spec = bayesude_peer.specification()
    fits = [
        bayesude_peer.fit_bayesude(
            spec, problem.as_dataset(times[i], v[i], w[i]), size, clock, starts
        )
        for i in range(size.num_subjects)
    ]
    return {
        "draws": {
            k: np.stack([f["draws"][k] for f in fits], axis=-1)
            for k in problem.PARAMETERS
        },
        **{
            k: sum(f[k] for f in fits)
            for k in ("wall_s", "compile_s", "num_gradients", "divergences")
        },
        "ess_multiplier": size.num_subjects,
    }
