"""Solving a vector field at the observation times, with failure as data.

A solve that fails (step budget exhausted, step size collapsed, non-finite
state) does not raise: it reports ``success = False`` so the likelihood can
reject the proposal. This is what keeps one extreme draw from aborting a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import jax.numpy as jnp
import numpy as np
from jax import Array

SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "Tsit5": diffrax.Tsit5,
    "Dopri5": diffrax.Dopri5,
    "Dopri8": diffrax.Dopri8,
    "Heun": diffrax.Heun,
    "Kvaerno3": diffrax.Kvaerno3,
    "Kvaerno4": diffrax.Kvaerno4,
    "Kvaerno5": diffrax.Kvaerno5,
}

ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "forward": diffrax.ForwardMode,
    "recursive_checkpoint": diffrax.RecursiveCheckpointAdjoint,
    "direct": diffrax.DirectAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
}


#: Largest number of unconstrained parameters for which "automatic" picks
#: forward-mode sensitivities. Measured by ``benchmarks/gradient_modes.py`` on a
#: 2-core CPU for a passive cell with 8 parameters: 0.65 ms per gradient forward
#: against 1.20 ms reverse for one chain, 1.6 against 4.0 ms for four.
FORWARD_MODE_MAX_PARAMETERS = 32


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """How the ODE is solved.

    Parameters
    ----------
    solver
        Name in :data:`SOLVERS`. ``Tsit5`` suits the non-stiff membrane and
        population models; the ``Kvaerno`` family is implicit, for stiff ones.
    rtol, atol
        Relative and absolute tolerances of the adaptive step-size controller.
    max_steps
        Step budget of one solve; a solve that needs more fails, and the
        proposal that asked for it is rejected.
    adjoint
        How gradients pass through the solve: ``"automatic"`` (the default),
        or a name in :data:`ADJOINTS`. Automatic uses forward-mode sensitivities
        under NUTS when the model has at most
        :data:`FORWARD_MODE_MAX_PARAMETERS` unconstrained parameters (they are
        several times cheaper there), and reverse mode with recursive
        checkpointing otherwise and for SVI/MAP.
    dt0
        Initial step in model time units, or None to let the solver choose.
    """

    solver: str = "Tsit5"
    rtol: float = 1e-6
    atol: float = 1e-8
    max_steps: int = 4096
    adjoint: str = "automatic"
    dt0: float | None = None

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(
                f"Unknown solver {self.solver!r}; use one of {', '.join(SOLVERS)}."
            )
        if self.adjoint != "automatic" and self.adjoint not in ADJOINTS:
            raise ValueError(
                f"Unknown adjoint {self.adjoint!r}; use automatic or one of "
                f"{', '.join(ADJOINTS)}."
            )
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError(
                f"rtol and atol must be positive, got rtol={self.rtol}, "
                f"atol={self.atol}."
            )
        if int(self.max_steps) < 1:
            raise ValueError(
                f"max_steps must be a positive integer, got {self.max_steps}."
            )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolved(
        self, num_parameters: int, sampler_uses_forward_mode: bool
    ) -> SolverSettings:
        """These settings with ``"automatic"`` replaced by the adjoint to use.

        Parameters
        ----------
        num_parameters
            Unconstrained dimension of the model.
        sampler_uses_forward_mode
            Whether the caller can differentiate in forward mode (NUTS can;
            SVI and MAP optimisers cannot).
        """
        if self.adjoint != "automatic":
            return self
        forward = (
            sampler_uses_forward_mode and num_parameters <= FORWARD_MODE_MAX_PARAMETERS
        )
        return dataclasses.replace(
            self, adjoint="forward" if forward else "recursive_checkpoint"
        )


def solve_at_times(
    vector_field: Callable[[Array, Array, object], Array],
    y0: Array,
    times: Array,
    args: object,
    settings: SolverSettings,
    jump_times: np.ndarray,
) -> tuple[Array, Array]:
    """Solve from ``times[0]`` and return the states at ``times``.

    Parameters
    ----------
    vector_field
        ``f(t, y, args) -> dy/dt`` for a state array ``y`` of any shape.
    y0
        State at ``times[0]``, e.g. shape ``(num_sweeps, num_states)``.
    times
        Save times, shape ``(num_times,)``, increasing; the first is the
        initial time.
    args
        Passed through to ``vector_field``.
    settings
        Solver, tolerances and step budget.
    jump_times
        Times where the vector field is discontinuous (input steps); the
        controller lands a step exactly on each.

    Returns
    -------
    states
        Shape ``(num_times, *y0.shape)``; finite even when the solve failed.
    success
        Scalar bool: the solve finished and every state is finite.
    """
    controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
        rtol=settings.rtol, atol=settings.atol
    )
    if jump_times.size:
        controller = diffrax.ClipStepSizeController(
            controller, jump_ts=jnp.asarray(jump_times)
        )

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        SOLVERS[settings.solver](),
        t0=times[0],
        t1=times[-1],
        dt0=settings.dt0,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=controller,
        adjoint=ADJOINTS[settings.adjoint](),
        max_steps=int(settings.max_steps),
        throw=False,
    )

    states = solution.ys
    success = (solution.result == diffrax.RESULTS.successful) & jnp.all(
        jnp.isfinite(states)
    )
    # Replace a failed solve's states by zeros, so nothing non-finite reaches the
    # likelihood or its gradient; the caller turns success=False into -inf.
    return jnp.where(success, states, 0.0), success
