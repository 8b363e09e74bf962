"""Solving a vector field at the observation times, with failure as data.

A solve that fails (step budget exhausted, step size collapsed, non-finite
state) does not raise: it reports ``success = False`` so the likelihood can
reject the proposal. This is what keeps one extreme draw from aborting a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
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

#: Solvers that need no root finding; cheap per step, but their step is limited by
#: the fastest time scale of the problem, which makes them crawl on stiff ones.
EXPLICIT_SOLVERS = ("Tsit5", "Dopri5", "Dopri8", "Heun")

#: Order of each solver's solution (its error estimate is one order lower).
SOLVER_ORDERS = {
    "Tsit5": 5,
    "Dopri5": 5,
    "Dopri8": 8,
    "Heun": 2,
    "Kvaerno3": 3,
    "Kvaerno4": 4,
    "Kvaerno5": 5,
}

#: Solver picked by ``solver="automatic"`` for stiff and for non-stiff problems.
STIFF_SOLVER, NONSTIFF_SOLVER = "Kvaerno5", "Tsit5"

#: Root finders of the implicit stages, with tolerances taken from the step-size
#: controller. ``very_chord`` reuses one Jacobian for a whole step (the cheapest,
#: and diffrax's default); ``chord`` reuses it within one stage; ``newton``
#: recomputes it every iteration, which converges where the Jacobian changes
#: fast within a step (action potentials) at a higher cost per step.
ROOT_FINDERS: dict[str, Callable[[], optx.AbstractRootFinder]] = {
    "very_chord": diffrax.with_stepsize_controller_tols(diffrax.VeryChord),
    "chord": diffrax.with_stepsize_controller_tols(optx.Chord),
    "newton": diffrax.with_stepsize_controller_tols(optx.Newton),
}

#: Loosest relative tolerance at which gradients are trusted: above it the
#: derivative of the discretised solve can differ from the derivative of the
#: solution by more than a NUTS step can tolerate.
LOOSEST_GRADIENT_RTOL = 1e-3

#: Lowest solver order whose error estimate is trusted for gradients. Heun's
#: estimate comes from an embedded first-order (Euler) solution.
LOWEST_GRADIENT_ORDER = 3

#: Half-width of the stability region of explicit Runge-Kutta solvers of order
#: four and five along the negative real axis (about 3.3 for Tsit5 and Dopri5).
EXPLICIT_STABILITY_RADIUS = 3.3

#: Ratio of fastest to slowest rate above which time scales count as far apart.
MIN_STIFFNESS_RATIO = 100.0

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
        ``"automatic"``, or a name in :data:`SOLVERS`. ``Tsit5`` suits the
        non-stiff membrane and population models; the ``Kvaerno`` family is
        implicit, for stiff ones (Hodgkin–Huxley with fast sodium gates,
        relaxation oscillators). ``"automatic"`` estimates stiffness before
        fitting and picks :data:`STIFF_SOLVER` or :data:`NONSTIFF_SOLVER`.
    rtol, atol
        Relative and absolute tolerances of the adaptive step-size controller.
        Gradients are unreliable when ``rtol`` exceeds
        :data:`LOOSEST_GRADIENT_RTOL`, and a warning says so.
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
    root_finder
        Root finder of an implicit solver's stages, a name in
        :data:`ROOT_FINDERS`; ignored by explicit solvers.
    """

    solver: str = "Tsit5"
    rtol: float = 1e-6
    atol: float = 1e-8
    max_steps: int = 4096
    adjoint: str = "automatic"
    dt0: float | None = None
    root_finder: str = "very_chord"

    def __post_init__(self) -> None:
        if self.solver != "automatic" and self.solver not in SOLVERS:
            raise ValueError(
                f"Unknown solver {self.solver!r}; use automatic or one of "
                f"{', '.join(SOLVERS)}."
            )
        if self.adjoint != "automatic" and self.adjoint not in ADJOINTS:
            raise ValueError(
                f"Unknown adjoint {self.adjoint!r}; use automatic or one of "
                f"{', '.join(ADJOINTS)}."
            )
        if self.root_finder not in ROOT_FINDERS:
            raise ValueError(
                f"Unknown root_finder {self.root_finder!r}; use one of "
                f"{', '.join(ROOT_FINDERS)}."
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

    @property
    def is_explicit(self) -> bool:
        return self.solver in EXPLICIT_SOLVERS

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

    def gradient_accuracy_problems(self) -> list[str]:
        """Reasons why gradients through solves with these settings are unreliable.

        Returns
        -------
        list of str
            One sentence per problem, naming the setting to change; empty when
            the settings are fine.
        """
        problems = []
        if self.rtol > LOOSEST_GRADIENT_RTOL:
            problems.append(
                f"rtol={self.rtol:g} is looser than {LOOSEST_GRADIENT_RTOL:g}, so "
                f"the gradient of the discretised solve may differ from the "
                f"derivative of the solution; set rtol to 1e-6 or tighter."
            )
        order = SOLVER_ORDERS.get(self.solver)
        if order is not None and order < LOWEST_GRADIENT_ORDER:
            problems.append(
                f"solver {self.solver} has order {order} and a first-order error "
                f"estimate, so its step sizes (and gradients) jump with the "
                f"parameters; use Tsit5, or Kvaerno5 for stiff problems."
            )
        return problems


class Solution(NamedTuple):
    """What :func:`solve_at_times` returns.

    Attributes
    ----------
    states
        Shape ``(num_times, *y0.shape)``; zeros (finite) when the solve failed.
    success
        Scalar bool: the solve finished and every state is finite.
    failure
        Scalar int, a key of :data:`FAILURE_REASONS` (0 when successful).
    """

    states: Array
    success: Array
    failure: Array


#: Why a solve failed, by :attr:`Solution.failure` code.
FAILURE_REASONS = {
    0: "",
    1: "max_steps",
    2: "step size collapsed or implicit stages did not converge",
    3: "non-finite state",
}


def solve_at_times(
    vector_field: Callable[[Array, Array, object], Array],
    y0: Array,
    times: Array,
    args: object,
    settings: SolverSettings,
    jump_times: np.ndarray | Array,
) -> Solution:
    """Solve from ``times[0]`` and return the states at ``times`` only.

    Only the save times are stored, never a dense trajectory: memory grows with
    ``len(times)``, not with ``max_steps``.

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
        Solver, tolerances and step budget; ``solver`` must not be
        ``"automatic"`` (see :func:`choose_solver`).
    jump_times
        Times where the vector field is discontinuous (input steps, stimulus
        onsets), shape ``(num_jumps,)``; the controller ends a step exactly on
        each. They may be traced values (an onset time that is a parameter):
        the step boundary then moves with the parameter, so the solution's
        derivative with respect to it is right.

    Returns
    -------
    Solution
        States at ``times``, a success flag and a failure code.
    """
    if settings.solver == "automatic":
        raise ValueError(
            "solve_at_times needs a concrete solver; resolve solver='automatic' "
            "with choose_solver first."
        )
    controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
        rtol=settings.rtol, atol=settings.atol, **_controller_coefficients(settings)
    )
    if np.shape(jump_times)[0]:
        controller = diffrax.ClipStepSizeController(
            controller, jump_ts=jnp.asarray(jump_times, dtype=jnp.result_type(times))
        )

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(_finite_vector_field(vector_field)),
        _solver(settings),
        t0=times[0],
        t1=times[-1],
        dt0=settings.dt0,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=controller,
        # Unresolved "automatic" means reverse mode, which serves any caller.
        adjoint=ADJOINTS.get(settings.adjoint, diffrax.RecursiveCheckpointAdjoint)(),
        max_steps=int(settings.max_steps),
        throw=False,
    )

    states = solution.ys
    finished = solution.result == diffrax.RESULTS.successful
    finite = jnp.all(jnp.isfinite(states))
    success = finished & finite
    failure = jnp.where(
        success,
        0,
        jnp.where(
            solution.result == diffrax.RESULTS.max_steps_reached,
            1,
            jnp.where(finished, 3, 2),
        ),
    )
    # Replace a failed solve's states by zeros, so nothing non-finite reaches the
    # likelihood or its gradient; the caller turns success=False into -inf.
    return Solution(jnp.where(success, states, 0.0), success, failure)


def _finite_vector_field(vector_field):
    """``vector_field`` with non-finite derivatives and tangents made finite.

    Implicit solvers differentiate through linear solves that raise an error,
    even with ``throw=False``, when a NaN reaches them in forward mode; one
    extreme proposal would then abort a whole run. A non-finite derivative
    becomes a huge finite one instead (the step is rejected, and the solve
    fails through its step budget or a non-finite state, which the likelihood
    rejects), and its tangent becomes zero.
    """

    def guarded(t, y, args):
        return _finite(vector_field(t, y, args))

    return guarded


def _finite(x: Array) -> Array:
    # Where selects, so the non-finite branch's tangent is dropped with it.
    huge = jnp.sqrt(jnp.finfo(jnp.result_type(x)).max)
    return jnp.where(jnp.isfinite(x), x, huge)


def _controller_coefficients(settings: SolverSettings) -> dict[str, float]:
    """Step-size controller gains: integral for explicit solvers, PI for implicit.

    On stiff problems a pure integral controller keeps proposing steps the
    error estimate rejects. The PI gains recommended by diffrax for implicit
    solvers (Söderlind's) nearly halve the steps of Kvaerno5 on Van der Pol at
    mu = 1000 (3,563 against 6,176 at rtol 1e-6, a third of them rejected
    rather than half).
    """
    if settings.is_explicit:
        return {"pcoeff": 0.0, "icoeff": 1.0}
    return {"pcoeff": 0.3, "icoeff": 0.4}


def _solver(settings: SolverSettings) -> diffrax.AbstractSolver:
    solver_class = SOLVERS[settings.solver]
    if settings.is_explicit:
        return solver_class()
    return solver_class(root_finder=ROOT_FINDERS[settings.root_finder]())


@dataclasses.dataclass(frozen=True)
class StiffnessEstimate:
    """How stiff a problem looks at one point.

    Attributes
    ----------
    spectral_radius
        Largest modulus of an eigenvalue of the vector field's Jacobian, in
        1/time units: the rate of the fastest mode.
    duration
        Length of the solve, in time units.
    explicit_steps
        Fewest steps an explicit solver can take over the solve, however loose
        its tolerances: ``spectral_radius * duration`` divided by
        :data:`EXPLICIT_STABILITY_RADIUS`.
    stiffness_ratio
        Fastest over slowest rate (moduli of the Jacobian's eigenvalues,
        ignoring zero ones): how far apart the time scales are.
    """

    spectral_radius: float
    duration: float
    explicit_steps: float
    stiffness_ratio: float

    def looks_stiff(self, max_steps: int) -> bool:
        """Whether the time scales are far apart and stability alone would use
        more than half of ``max_steps``.

        A long solve of a problem with one time scale needs many steps too,
        but for accuracy, which an implicit solver would not save; it takes
        both conditions for an implicit solver to pay.
        """
        far_apart = self.stiffness_ratio > MIN_STIFFNESS_RATIO
        return far_apart and self.explicit_steps > 0.5 * max_steps


def estimate_stiffness(
    vector_field: Callable[[Array, Array, object], Array],
    y0: Array,
    args: object,
    t0: float,
    t1: float,
) -> StiffnessEstimate:
    """Estimate stiffness from the Jacobian of ``vector_field`` at ``(t0, y0)``.

    An explicit solver's step must keep ``step * |lambda|`` inside its
    stability region for every eigenvalue ``lambda`` of the Jacobian, however
    slowly the solution itself changes; that is what makes a problem stiff.
    The estimate looks at the initial point only, so a problem that becomes
    stiff later (a spike) can be missed; the message of a failed solve covers
    that case.

    Parameters
    ----------
    vector_field
        ``f(t, y, args)`` as for :func:`solve_at_times`.
    y0
        Initial state, any shape.
    args
        Passed to ``vector_field``.
    t0, t1
        Start and end of the solve.
    """
    y0 = jnp.asarray(y0)

    def flat_field(flat_y):
        return jnp.ravel(vector_field(t0, flat_y.reshape(y0.shape), args))

    jacobian = np.asarray(jax.jacfwd(flat_field)(jnp.ravel(y0)))
    radius, ratio = np.inf, np.inf
    if np.all(np.isfinite(jacobian)):
        moduli = np.abs(np.linalg.eigvals(jacobian))
        radius = float(np.max(moduli))
        nonzero = moduli[moduli > 1e-12 * radius]
        ratio = float(radius / np.min(nonzero)) if nonzero.size else 1.0
    duration = float(t1 - t0)
    return StiffnessEstimate(
        spectral_radius=radius,
        duration=duration,
        explicit_steps=radius * duration / EXPLICIT_STABILITY_RADIUS,
        stiffness_ratio=ratio,
    )


def choose_solver(
    settings: SolverSettings, estimate: StiffnessEstimate
) -> SolverSettings:
    """Resolve ``solver="automatic"`` with a stiffness estimate.

    Returns the settings unchanged when a solver was named.
    """
    if settings.solver != "automatic":
        return settings
    stiff = estimate.looks_stiff(settings.max_steps)
    return dataclasses.replace(
        settings, solver=STIFF_SOLVER if stiff else NONSTIFF_SOLVER
    )


def stiffness_advice(settings: SolverSettings) -> str:
    """The sentence that tells a user of an explicit solver what to change."""
    return (
        f"the problem looks stiff for the explicit solver {settings.solver}; set "
        f"the specification's solver setting to an implicit solver, e.g. "
        f"SolverSettings(solver='{STIFF_SOLVER}') (solver: {{solver: "
        f"{STIFF_SOLVER}}} in a workflow file), or raise max_steps"
    )
