"""Measuring JAX compilation separately from the work it compiles.

Compiling a model can take longer than sampling a short fit, so batch runs
report the two apart. JAX announces every trace, lowering and XLA compilation
through :mod:`jax.monitoring`; :class:`CompilationMeter` adds them up.
"""

from __future__ import annotations

import dataclasses
import threading

import jax.monitoring

#: JAX's events for tracing a function, lowering it to XLA, and compiling it.
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


@dataclasses.dataclass
class CompilationTally:
    """Compilation work done in this process since a meter was started.

    Attributes
    ----------
    num_compilations
        XLA compilations (programs built by the backend, including those read
        from the persistent cache).
    num_cache_hits
        Of those, programs read from the persistent compilation cache.
    compile_time_s
        Seconds spent tracing, lowering and compiling.
    """

    num_compilations: int = 0
    num_cache_hits: int = 0
    compile_time_s: float = 0.0


class CompilationMeter:
    """Process-wide tally of JAX compilations; one listener per process.

    Example
    -------
    >>> meter = CompilationMeter.instance()
    >>> before = meter.snapshot()
    >>> # ... run something that compiles ...
    >>> spent = meter.since(before)
    """

    _instance: CompilationMeter | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._tally = CompilationTally()
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)

    @classmethod
    def instance(cls) -> CompilationMeter:
        """The process's meter, registered with JAX on first use."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def snapshot(self) -> CompilationTally:
        """A copy of the tally so far."""
        return dataclasses.replace(self._tally)

    def since(self, before: CompilationTally) -> CompilationTally:
        """Compilation work done since ``before`` was taken."""
        now = self._tally
        return CompilationTally(
            num_compilations=now.num_compilations - before.num_compilations,
            num_cache_hits=now.num_cache_hits - before.num_cache_hits,
            compile_time_s=now.compile_time_s - before.compile_time_s,
        )

    def _on_duration(self, event: str, duration_s: float, **_) -> None:
        if event in (_TRACE_EVENT, _LOWERING_EVENT, _BACKEND_COMPILE_EVENT):
            self._tally.compile_time_s += duration_s
        if event == _BACKEND_COMPILE_EVENT:
            self._tally.num_compilations += 1

    def _on_event(self, event: str, **_) -> None:
        if event == _CACHE_HIT_EVENT:
            self._tally.num_cache_hits += 1
