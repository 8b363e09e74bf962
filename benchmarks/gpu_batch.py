"""Cost per subject of the batch benchmark, many subjects vmapped, GPU against CPU.

Fits ``--subjects`` independent subjects of the reference problem (each with
its own parameters, 4 chains, its own step size and mass matrix) in one
compiled program, on the CPU and on every other backend JAX finds (a GPU when
``jax[cuda]`` is installed and a GPU is present), and prints and writes
(``results/bench/gpu_batch.jsonl``) the seconds per subject, compile apart,
and the ratio CPU / accelerator. Small ODEs are often faster on the CPU; the
answer decides where batches should run.

Runs anywhere; without an accelerator it reports the CPU only. ``--quick``
shrinks everything to a smoke-test size.

Usage: ``python benchmarks/gpu_batch.py [--subjects 256] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax_peers  # noqa: E402
import peers  # noqa: E402
import reference_problem as problem  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="toy sizes (smoke run)")
    parser.add_argument("--output", default="results/bench/gpu_batch.jsonl")
    arguments = parser.parse_args(argv)

    size = problem.SIZES["quick" if arguments.quick else "full"]
    subjects = 4 if arguments.quick else arguments.subjects
    size = dataclasses.replace(size, num_subjects=subjects)
    lines = [_time_on(backend, size) for backend in _backends()]
    cpu = lines[0]
    for line in lines:
        line["cpu_over_this"] = cpu["s_per_subject"] / line["s_per_subject"]
        print(
            f"{line['backend']:5s} {subjects} subjects: {line['s_per_subject']:.3f} s "
            f"per subject ({line['ms_per_gradient']:.4f} ms per chain-gradient), "
            f"compile {line['compile_s']:.1f} s; CPU / this = "
            f"{line['cpu_over_this']:.2f}"
        )

    from bayesude.files import atomic_path

    with atomic_path(arguments.output) as temporary:
        temporary.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return 0


def _backends() -> list[str]:
    others = []
    for backend in ("gpu", "tpu"):
        try:
            jax.devices(backend)
            others.append(backend)
        except RuntimeError:
            continue
    return ["cpu", *others]


def _time_on(backend: str, size: problem.Size) -> dict:
    """Compile once, then time one full fit of every subject on ``backend``."""
    device = jax.devices(backend)[0]
    times, v, w = peers.batch_data(size)
    args = jax.device_put((jnp.asarray(times), jnp.asarray(v), jnp.asarray(w)), device)
    first = tuple(a[0] for a in args)
    model = jax_peers.diffrax_model
    starts = jax.device_put(
        jax_peers.unconstrained_starts(
            model, first, problem.starting_points(size.num_chains)
        ),
        device,
    )
    keys = jax.device_put(
        jax.random.split(jax.random.key(0), (size.num_subjects, size.num_chains)),
        device,
    )
    sample = jax_peers.per_subject_sampler(model, size)

    started = time.perf_counter()
    compiled = sample.lower(keys, starts, args).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    _, num_steps, _ = jax.block_until_ready(compiled(keys, starts, args))
    run_s = time.perf_counter() - started
    return {
        "backend": backend,
        "device": str(device),
        "num_subjects": size.num_subjects,
        "size": dataclasses.asdict(size),
        "compile_s": compile_s,
        "run_s": run_s,
        "s_per_subject": run_s / size.num_subjects,
        "ms_per_gradient": 1e3 * run_s / float(np.sum(num_steps)),
    }


if __name__ == "__main__":
    sys.exit(main())
