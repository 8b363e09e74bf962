"""Time-varying inputs of a vector field: protocol currents and stimuli.

Recorded protocols (current steps) are held constant between samples, so a step
stays a step however coarsely it was sampled, and every change of level is a
*jump time* the step-size controller must not step across. Smooth stimuli are
interpolated linearly instead.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax import Array

INTERPOLATIONS = ("previous", "linear")


@dataclasses.dataclass(frozen=True)
class SampledInput:
    """An input known at sample times, for one or several sweeps.

    Parameters
    ----------
    times
        Sample times, shape ``(num_times,)``, increasing, in model time units.
    values
        Input values, shape ``(num_sweeps, num_times)``.
    interpolation
        ``"previous"``: hold each value until the next sample (protocol steps);
        ``"linear"``: straight lines between samples (smooth stimuli).
    """

    times: np.ndarray
    values: np.ndarray
    interpolation: str = "previous"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Unknown input interpolation {self.interpolation!r}; use one of "
                f"{', '.join(INTERPOLATIONS)}."
            )

    def jump_times(self) -> np.ndarray:
        """Times at which a held input changes level in any sweep.

        Linear interpolation has no jumps, so it returns an empty array.
        """
        if self.interpolation != "previous" or self.times.size < 2:
            return np.zeros(0)
        changes = np.any(np.diff(self.values, axis=-1) != 0.0, axis=0)
        return self.times[1:][changes]


def evaluate_input(times: Array, values: Array, t: Array, interpolation: str) -> Array:
    """Value of one sweep's input at time ``t``.

    Parameters
    ----------
    times
        Sample times, shape ``(num_times,)``.
    values
        The sweep's values, shape ``(num_times,)``.
    t
        Time at which to evaluate, a scalar.
    interpolation
        ``"previous"`` or ``"linear"``.
    """
    if interpolation == "linear":
        return jnp.interp(t, times, values)
    # side="right" makes the new level apply from the jump time itself onwards.
    index = jnp.clip(
        jnp.searchsorted(times, t, side="right") - 1, 0, times.shape[0] - 1
    )
    return values[index]


@dataclasses.dataclass(frozen=True)
class StepStimulus:
    """A step of an input whose timing or size may be a model parameter.

    The input takes ``amplitude`` from ``onset`` on (and back to zero from
    ``offset``, if given). Each of the three is a number or the name of a
    parameter that gets a prior in the specification, so a latent stimulus
    onset can be inferred. Onset and offset are jump times of the step-size
    controller even when they are parameters: a step ends exactly on them, so
    the solution moves with them and their gradient is the derivative of the
    solution, not zero (a step function's own derivative).

    Parameters
    ----------
    input
        The model input the step drives, e.g. ``"current"``. An input driven
        by stimuli is not read from the data.
    amplitude
        Level during the step, in the input's units, or a parameter name.
    onset
        Start of the step in model time units, or a parameter name.
    offset
        End of the step, a parameter name, or None for a step that lasts.
    """

    input: str
    amplitude: float | str
    onset: float | str
    offset: float | str | None = None

    def parameter_names(self) -> tuple[str, ...]:
        """Names of the step's values that are parameters."""
        values = (self.amplitude, self.onset, self.offset)
        return tuple(value for value in values if isinstance(value, str))

    def jump_times(self, params: dict[str, Array]) -> Array:
        """Onset (and offset) in model time units, shape ``(1,)`` or ``(2,)``."""
        times = [self._resolve(self.onset, params)]
        if self.offset is not None:
            times.append(self._resolve(self.offset, params))
        return jnp.stack([jnp.asarray(t, dtype=float) for t in times])

    def value(self, t: Array, params: dict[str, Array]) -> Array:
        """The input at time ``t``: zero before the onset and after the offset."""
        on = t >= self._resolve(self.onset, params)
        if self.offset is not None:
            on = on & (t < self._resolve(self.offset, params))
        return jnp.where(on, self._resolve(self.amplitude, params), 0.0)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def _resolve(value: float | str, params: dict[str, Array]) -> Array:
        return params[value] if isinstance(value, str) else jnp.asarray(value)
