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
