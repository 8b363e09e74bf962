"""Counting failed ODE solves inside NUTS, per chain and per transition.

A failed solve makes the log density -inf, which NUTS sees as a divergence and
rejects; NumPyro keeps no record of why. To report solver failures next to
divergences, the model sends a flag to the host at every log-density
evaluation, and the kernel marks the end of every transition. The host-side
:class:`SolverFailureLog` attributes each flag to a chain and a transition.

Attribution relies on the order of host callbacks, which JAX keeps when they are
``ordered``: with vectorised chains each evaluation reports its chains in order
(chain 0, 1, …), and with sequential chains each chain runs all its transitions
before the next starts.
"""

from __future__ import annotations

import jax
import numpy as np
from numpyro.infer import NUTS

CHAIN_METHODS = ("vectorized", "sequential")


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
        """Called from the model at each log-density evaluation."""
        if not self.active:
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

    def sample(self, state, model_args, model_kwargs):
        new_state = super().sample(state, model_args, model_kwargs)
        jax.debug.callback(
            self._failure_log.record_transition_end, new_state.i, ordered=True
        )
        return new_state
