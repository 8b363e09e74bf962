"""The reference problem every peer fits, and how a fit becomes one JSON record.

FitzHugh–Nagumo (dimensionless), both states observed with Gaussian noise:

    dv/dt = v - v**3 / 3 - w + I_ext,     tau dw/dt = v + a - b w,

with ``I_ext = 0.5`` and the initial state ``(v, w) = (-1, 1)`` known, and
``a``, ``b``, ``tau`` and one noise scale per state unknown. Priors: ``a ~
Normal(0.7, 0.3)``, ``b ~ Normal(0.8, 0.3)``, ``tau ~ LogNormal(2.5, 0.5)``,
``sigma_v, sigma_w ~ HalfNormal(0.5)``. Data are simulated once with SciPy at
tight tolerance from ``a = 0.7, b = 0.8, tau = 12.5`` and noise 0.1, at
``num_times`` times evenly spread over ``[0, 100]`` (the first is the initial
time).

Every peer gets the same data, priors, tolerances (rtol 1e-6, atol 1e-8),
NUTS settings (4 chains, diagonal mass matrix, target acceptance 0.8, tree
depth at most 10) and starting points (prior medians jittered with a fixed
seed); only the random streams of the samplers differ between Stan and JAX.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

import arviz as az
import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp

TRUTH = {"a": 0.7, "b": 0.8, "tau": 12.5}
I_EXT = 0.5
Y0 = (-1.0, 1.0)
NOISE = 0.1
NOISE_PRIOR_SCALE = 0.5
T_END = 100.0
RTOL, ATOL, MAX_STEPS = 1e-6, 1e-8, 4096
PRIORS = {
    "a": ("Normal", 0.7, 0.3),
    "b": ("Normal", 0.8, 0.3),
    "tau": ("LogNormal", 2.5, 0.5),
}
#: Parameters reported by every peer, in this order.
PARAMETERS = ("a", "b", "tau", "sigma_v", "sigma_w")
#: Width of the jitter of the starting points around prior medians.
START_JITTER = 0.1
DATA_SEED = 20261203


@dataclasses.dataclass(frozen=True)
class Size:
    """How large a benchmark run is.

    Attributes
    ----------
    num_times
        Observation times per state, over ``[0, 100]``.
    num_chains, num_warmup, num_samples
        NUTS chains, warm-up and kept draws per chain.
    num_subjects
        Subjects of the batch variant.
    """

    num_times: int
    num_chains: int
    num_warmup: int
    num_samples: int
    num_subjects: int


SIZES = {
    "full": Size(200, 4, 500, 500, 8),
    "quick": Size(50, 2, 30, 30, 2),
}


def simulate(
    num_times: int, params: dict[str, float] = TRUTH, seed: int = DATA_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy observations of the reference model.

    Returns
    -------
    times, v, w
        Each of shape ``(num_times,)``; ``times[0] = 0`` is the initial time.
    """
    times = np.linspace(0.0, T_END, num_times)

    def vector_field(t, y):
        v, w = y
        return [
            v - v**3 / 3.0 - w + I_EXT,
            (v + params["a"] - params["b"] * w) / params["tau"],
        ]

    solution = solve_ivp(
        vector_field, (0.0, T_END), Y0, t_eval=times, rtol=1e-10, atol=1e-12
    )
    rng = np.random.default_rng(seed)
    noisy = solution.y + NOISE * rng.standard_normal(solution.y.shape)
    return times, noisy[0], noisy[1]


def as_dataset(times: np.ndarray, v: np.ndarray, w: np.ndarray) -> xr.Dataset:
    """The observations in bayesude's data convention (one sweep)."""
    return xr.Dataset(
        {"v": ("time", v), "w": ("time", w)},
        coords={"time": ("time", times, {"units": "1"})},
    )


def starting_points(num_chains: int, seed: int = 1) -> list[dict[str, float]]:
    """Per-chain starting values (constrained), shared by every peer."""
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(num_chains):
        z = START_JITTER * rng.standard_normal(5)
        starts.append(
            {
                "a": 0.7 + z[0],
                "b": 0.8 + z[1],
                "tau": float(np.exp(2.5 + z[2])),
                "sigma_v": float(0.2 * np.exp(z[3])),
                "sigma_w": float(0.2 * np.exp(z[4])),
            }
        )
    return starts


class CompileClock:
    """Adds up the time JAX spends tracing, lowering and compiling.

    JAX reports each phase through :mod:`jax.monitoring`; the listener stays
    registered for the life of the process, so a peer reads the clock before
    and after the part it times.
    """

    _EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        import jax.monitoring

        self.events: list[tuple[float, float]] = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    @property
    def seconds(self) -> float:
        """Compile seconds so far."""
        return sum(duration for _, duration in self.events)

    def seconds_until(self, moment: float) -> float:
        """Compile seconds of phases that ended before ``moment`` (``time.time()``)."""
        return sum(duration for ended, duration in self.events if ended <= moment)

    def _listen(self, event: str, duration: float, **_: object) -> None:
        if event in self._EVENTS:
            self.events.append((time.time(), duration))


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as clock:`` leaves the elapsed seconds in ``clock["s"]``."""
    clock = {"s": 0.0}
    started = time.perf_counter()
    try:
        yield clock
    finally:
        clock["s"] = time.perf_counter() - started


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children.

    On a machine shared with other work, CPU time is a steadier measure of a
    fit's cost than wall time, which counts the waits for a core.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_memory_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def record(
    peer: str,
    variant: str,
    draws: dict[str, np.ndarray],
    *,
    wall_s: float,
    compile_s: float,
    num_gradients: int,
    divergences: int,
    ess_multiplier: int = 1,
    extra: dict | None = None,
) -> dict:
    """One JSON-ready line describing a fit.

    Parameters
    ----------
    peer, variant
        Who fitted which variant (``reference``, ``ude``, ``batch``).
    draws
        Kept draws of each reported parameter, shape ``(chain, draw)``.
    wall_s
        Seconds from the start of warm-up (initialisation included) to the
        last draw, compilation included.
    compile_s
        Seconds of that spent compiling (C++ for Stan, XLA for JAX peers).
    num_gradients
        Log-density gradients over all chains, warm-up included (leapfrog
        steps).
    divergences
        Divergent transitions among the kept draws.
    ess_multiplier
        Independent fits the draws hold (subjects of a batch, on a last axis
        of each draw array): ESS per second counts the worst parameter's ESS
        once per fit.
    extra
        Further fields (isolated gradient timing, floor estimate, ...).
    """
    posterior = az.convert_to_dataset({k: np.asarray(v) for k, v in draws.items()})
    bulk = az.ess(posterior, method="bulk")
    tail = az.ess(posterior, method="tail")
    rhat = az.rhat(posterior)
    min_bulk = float(min(bulk[name].min() for name in draws))
    min_tail = float(min(tail[name].min() for name in draws))
    sampling_s = max(wall_s - compile_s, 1e-9)
    line = {
        "peer": peer,
        "variant": variant,
        "ms_per_gradient": 1e3 * sampling_s / max(num_gradients, 1),
        "num_gradients": int(num_gradients),
        "min_bulk_ess": min_bulk,
        "min_tail_ess": min_tail,
        "ess_per_s": ess_multiplier * min_bulk / sampling_s,
        "ess_per_s_with_compile": ess_multiplier * min_bulk / wall_s,
        "wall_s": wall_s,
        "compile_s": compile_s,
        "max_rhat": float(max(rhat[name].max() for name in draws)),
        "divergences": int(divergences),
        "peak_memory_mb": peak_memory_mb(),
        "posterior_mean": {
            name: _rounded(np.mean(value, axis=(0, 1))) for name, value in draws.items()
        },
        "posterior_sd": {
            name: _rounded(np.std(value, axis=(0, 1))) for name, value in draws.items()
        },
        "cpu_count": os.cpu_count(),
    }
    line.update(extra or {})
    return line


def _rounded(value: np.ndarray) -> float | list:
    value = np.round(np.asarray(value, dtype=float), 6)
    return value.tolist()
