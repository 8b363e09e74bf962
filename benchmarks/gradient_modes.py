"""Cost of one log-density gradient with forward- and reverse-mode sensitivities.

Runs each adjoint side by side in this process, on the same shipped cell and
the same parameter values (close to that cell's posterior), for one chain and
for four vectorised chains, and prints the times and their ratio. This is the
measurement behind the ``"automatic"`` adjoint choice in
``bayesude.core.solve``.

Usage: ``.venv/bin/python benchmarks/gradient_modes.py``
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy, unconstrain_fn

import bayesude
from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data

CELL = pathlib.Path(__file__).parents[1] / "data" / "current_clamp" / "171116sh_0018.nc"
POSTERIOR_VALUES = {
    "tau_m": 16.6,
    "E_L": -61.7,
    "R_in": 122.0,
    "V_0": [-61.9, -61.5, -61.9, -61.0],
    "sigma_voltage": 0.97,
}
REPEATS = 50


def _milliseconds_per_call(function, argument) -> float:
    function = jax.jit(function)
    jax.block_until_ready(function(argument))
    started = time.perf_counter()
    for _ in range(REPEATS):
        jax.block_until_ready(function(argument))
    return (time.perf_counter() - started) / REPEATS * 1e3


def _gradient_function(spec, data, adjoint):
    spec = dataclasses.replace(
        spec, solver=dataclasses.replace(spec.solver, adjoint=adjoint)
    )
    built = build_model(spec, prepare_data(spec, data, "cell"))
    values = {name: jnp.asarray(value) for name, value in POSTERIOR_VALUES.items()}
    flat, unravel = ravel_pytree(unconstrain_fn(built.model, (), {}, values))

    def potential(x):
        return potential_energy(built.model, (), {}, unravel(x))

    gradient = jax.jacfwd(potential) if adjoint == "forward" else jax.grad(potential)
    return gradient, flat


def main() -> None:
    recordings = bayesude.load_current_clamp(
        {"cell": {"file": CELL, "sweeps": [0, 1, 2, 3], "window_ms": (100, 750)}},
        downsample_ms=2.0,
    )
    data = bayesude.select_subject(recordings, "cell")
    spec = bayesude.ModelSpecification(
        mechanistic="passive_membrane", observed={"voltage": "V"}
    )

    times = {}
    for adjoint in ("forward", "recursive_checkpoint"):
        gradient, flat = _gradient_function(spec, data, adjoint)
        times[adjoint, 1] = _milliseconds_per_call(gradient, flat)
        times[adjoint, 4] = _milliseconds_per_call(
            jax.vmap(gradient), jnp.stack([flat] * 4)
        )

    print(f"passive membrane, {flat.size} parameters, 4 sweeps x 325 samples")
    for chains in (1, 4):
        forward = times["forward", chains]
        reverse = times["recursive_checkpoint", chains]
        print(
            f"{chains} chain(s): forward {forward:.2f} ms, reverse {reverse:.2f} ms "
            f"per gradient; reverse / forward = {reverse / forward:.1f}"
        )


if __name__ == "__main__":
    main()
