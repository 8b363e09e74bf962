"""Counting failed ODE solves inside NUTS, per chain and per transition.

A failed solve makes the log density -inf, which NUTS sees as a divergence and
rejects; NumPyro keeps no record of why. To report solver failures next to
divergences, the model sends a flag to the host at every log-density
evaluation, and the kernel marks the end of every transition. The host-side
:class:`SolverFailureLog` attributes each flag to a chain and a transition.

Attribution relies on the order of host callbacks, which JAX keeps when they are
``ordered``: with vectorised chains each evaluation reports all chains at once
(one flag per chain, in chain order), and with sequential chains each chain
runs all its transitions before the next starts.

Every callback hands control from the compiled program to Python, which costs
far more than the flag it carries (on a busy 2-core machine, a callback per
chain and evaluation doubled the CPU time of a FitzHugh–Nagumo gradient), so
the model calls back only when a solve failed, once for all vectorised chains;
only the end of each transition is reported every time.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.custom_batching import custom_vmap
from numpyro.infer import NUTS

CHAIN_METHODS = ("vectorized", "sequential")


def host_callback(
    callback: Callable[[np.ndarray], None], only_when_true: bool = False
) -> Callable[[Array], Array]:
    """An ordered host callback that ``vmap`` calls once with the whole batch.

    ``report(value)`` sends ``value`` to ``callback`` and returns it; under
    ``vmap`` the callback receives the batched array (chains first) in one
    call. With ``only_when_true``, it is called only when some entry of
    ``value`` is true, and compiled code that reports nothing pays nothing.
    """

    def send(value):
        if not only_when_true:
            jax.debug.callback(callback, value, ordered=True)
            return
        jax.lax.cond(
            jnp.any(value),
            lambda v: jax.debug.callback(callback, v, ordered=True),
            lambda v: None,
            value,
        )

    @custom_vmap
    def report(value):
        send(value)
        return value

    @report.def_vmap
    def _report_batch(axis_size, in_batched, value):
        send(value)
        return value, in_batched[0]

    return report


class SolverFailureLog:
    """Host-side tally of failed solves during one phase (warm-up or sampling).

    Parameters
    ----------
    num_chains
        Number of chains.
    chain_method
        ``"vectorized"`` or ``"sequential"`` (how NumPyro runs the chains).
    """

    def __init__(self, num_chains: int, chain_method: str) -> None:
        if chain_method not in CHAIN_METHODS:
            raise ValueError(
                f"Solver failures can be attributed to chains only with chain_method "
                f"in {CHAIN_METHODS}, got {chain_method!r}."
            )
        self.num_chains = num_chains
        self.chain_method = chain_method
        self.active = False
        self._start_phase(1)

    def start_phase(self, num_transitions: int) -> None:
        """Begin counting a phase of ``num_transitions`` transitions per chain."""
        self._start_phase(num_transitions)
        self.active = True

    def stop(self) -> np.ndarray:
        """Stop counting; return failures ``(num_chains, num_transitions)``."""
        self.active = False
        return self.failures.copy()

    def record_evaluation(self, failed: np.ndarray) -> None:
        """Called from the model at each log-density evaluation.

        ``failed`` is one flag, or one flag per chain (vectorised chains).
        The model may call only when a flag is set: chains are told apart by
        the array's order or, for sequential chains, by completed transitions.
        """
        if not self.active:
            return
        failed = np.asarray(failed)
        if failed.ndim:
            for chain, flag in enumerate(failed.reshape(-1)[: self.num_chains]):
                transition = min(self._completed[chain], self.failures.shape[1] - 1)
                self.failures[chain, transition] += int(flag)
            return
        chain = self._current_chain()
        if self.chain_method == "vectorized":
            self._evaluation_calls += 1
        transition = min(self._completed[chain], self.failures.shape[1] - 1)
        self.failures[chain, transition] += int(np.asarray(failed))

    def record_transition_end(self, iteration: np.ndarray | None = None) -> None:
        """Called from the kernel after each transition of each chain."""
        if not self.active:
            return
        if np.ndim(iteration):
            self._completed[: np.size(iteration)] += 1
            return
        if self.chain_method == "vectorized":
            chain = self._end_calls % self.num_chains
            self._end_calls += 1
            self._evaluation_calls = 0
        else:
            chain = self._current_chain()
        self._completed[chain] += 1

    def _current_chain(self) -> int:
        if self.chain_method == "vectorized":
            return self._evaluation_calls % self.num_chains
        finished = np.flatnonzero(self._completed < self.failures.shape[1])
        return int(finished[0]) if finished.size else self.num_chains - 1

    def _start_phase(self, num_transitions: int) -> None:
        self.failures = np.zeros(
            (self.num_chains, max(num_transitions, 1)), dtype=np.int64
        )
        self._completed = np.zeros(self.num_chains, dtype=np.int64)
        self._evaluation_calls = 0
        self._end_calls = 0


class FailureCountingNUTS(NUTS):
    """NUTS that tells a :class:`SolverFailureLog` where each transition ends."""

    def __init__(self, model, failure_log: SolverFailureLog, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self._failure_log = failure_log
        self._report_end = host_callback(failure_log.record_transition_end)

    def sample(self, state, model_args, model_kwargs):
        new_state = super().sample(state, model_args, model_kwargs)
        self._report_end(new_state.i)
        return new_state
