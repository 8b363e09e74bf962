"""Throughput of batch fits on Dask, and the hierarchical model's cost per gradient.

Two measurements, run side by side in this process so that their ratios hold
even on a machine shared with other work:

1. **Independent fits on a local cluster**: the same set of synthetic passive
   cells fitted with NUTS on 1 and on 2 worker processes; fits per hour, their
   ratio, and the compile time each fit paid in its worker.
2. **Hierarchical model**: time of one log-density gradient (reverse mode) of
   the pooled passive-membrane model over 1, 8, 64 and 256 subjects solved in
   one vmapped program, and the time per subject.

Usage: ``.venv/bin/python benchmarks/batch_throughput.py [--fits 4]
[--subjects 1 8 64 256] [--skip-batch] [--skip-hierarchical]``
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time

os.environ.setdefault("BAYESUDE_COMPILATION_CACHE", "")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from numpyro.infer.util import initialize_model, potential_energy  # noqa: E402

import bayesude  # noqa: E402
from bayesude.batch import FitTask, fit_batch  # noqa: E402
from bayesude.inference.hierarchical import (  # noqa: E402
    build_hierarchical_model,
    resolve_pooling,
    stack_subjects,
)

STEP_ON_MS, STEP_OFF_MS = 20.0, 120.0
AMPLITUDES_PA = (-100.0, -50.0)
INFERENCE = {
    "method": "nuts",
    "num_chains": 2,
    "num_warmup": 150,
    "num_samples": 150,
    "init": "prior",
    "seed": 0,
}
REPEATS = 20


def passive_cell(tau_m, seed, num_times=100, dt_ms=2.0) -> xr.Dataset:
    """A passive cell's response to two current steps, dims ``(sweep, time)``."""
    rng = np.random.default_rng(seed)
    times = np.arange(num_times) * dt_ms
    on = (times >= STEP_ON_MS) & (times < STEP_OFF_MS)
    current = np.stack([np.where(on, a, 0.0) for a in AMPLITUDES_PA])
    voltage = np.empty_like(current)
    for sweep in range(len(AMPLITUDES_PA)):
        v, out = -65.0, []
        for step in current[sweep]:
            out.append(v)
            # Exact update of the linear ODE over one sample held at `step`.
            target = -65.0 + 150.0 * step * 1e-3
            v = target + (v - target) * np.exp(-dt_ms / tau_m)
        voltage[sweep] = np.asarray(out) + 0.5 * rng.standard_normal(num_times)
    return xr.Dataset(
        {
            "voltage": (
                ("sweep", "time"),
                voltage,
                {"units": "mV", "role": "observed"},
            ),
            "current": (("sweep", "time"), current, {"units": "pA", "role": "input"}),
        },
        coords={"sweep": [0, 1], "time": ("time", times, {"units": "ms"})},
    )


def passive_cells(num_subjects: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    taus = np.exp(np.log(15.0) + 0.2 * rng.standard_normal(num_subjects))
    cells = [passive_cell(tau, seed + i) for i, tau in enumerate(taus)]
    return xr.concat(cells, dim="subject").assign_coords(
        subject=[f"cell_{i:03d}" for i in range(num_subjects)]
    )


SPEC = bayesude.ModelSpecification(
    mechanistic="passive_membrane", observed={"voltage": "V"}
)


def measure_batch(num_fits: int) -> None:
    tasks = [
        FitTask(
            f"cell_{i}", "passive", SPEC.as_dict(), passive_cell(15.0, i), INFERENCE
        )
        for i in range(num_fits)
    ]
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as output:
            started = time.perf_counter()
            outcomes = fit_batch(tasks, output, workers=workers, progress_bar=False)
            elapsed = time.perf_counter() - started
        failed = [o for o in outcomes if o.error]
        rates[workers] = num_fits / elapsed * 3600
        compile_s = np.array([o.compile_time_s for o in outcomes])
        programs = np.array([o.num_compilations for o in outcomes])
        print(
            f"{workers} worker(s): {num_fits} fits in {elapsed:.0f} s = "
            f"{rates[workers]:.0f} fits/hour; compile time per fit "
            f"{compile_s.mean():.1f} s (min {compile_s.min():.1f}, max "
            f"{compile_s.max():.1f}), {programs.mean():.0f} programs compiled per "
            f"fit; {len(failed)} failed"
        )
    print(f"speed-up from 1 to 2 workers: {rates[2] / rates[1]:.2f}x")


def gradient_milliseconds(num_subjects: int) -> tuple[float, float]:
    """Compile time (s) and time per gradient (ms) of the pooled model."""
    data = passive_cells(num_subjects)
    spec = dataclasses.replace(
        SPEC,
        solver=dataclasses.replace(SPEC.solver, adjoint="recursive_checkpoint"),
    )
    stacked = stack_subjects(spec, data)
    model, _ = build_hierarchical_model(
        spec, stacked, resolve_pooling(spec, pooled=["tau_m", "E_L", "R_in"])
    )
    arrays = jax.tree.map(jax.numpy.asarray, stacked.arrays)
    start = initialize_model(jax.random.key(0), model, model_args=(arrays,))
    flat, unravel = ravel_pytree(start.param_info.z)

    def potential(x, arrays):
        return potential_energy(model, (arrays,), {}, unravel(x))

    gradient = jax.jit(jax.value_and_grad(potential))
    started = time.perf_counter()
    jax.block_until_ready(gradient(flat, arrays))
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(REPEATS):
        jax.block_until_ready(gradient(flat, arrays))
    return compile_s, (time.perf_counter() - started) / REPEATS * 1e3


def measure_hierarchical(subject_counts) -> None:
    print("subjects  compile (s)  ms/gradient  ms/gradient/subject")
    for count in subject_counts:
        compile_s, milliseconds = gradient_milliseconds(count)
        print(
            f"{count:8d}  {compile_s:11.1f}  {milliseconds:11.2f}  "
            f"{milliseconds / count:19.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=4)
    parser.add_argument("--subjects", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-hierarchical", action="store_true")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    if not arguments.skip_hierarchical:
        measure_hierarchical(arguments.subjects)
    if not arguments.skip_batch:
        measure_batch(arguments.fits)


if __name__ == "__main__":
    main()
