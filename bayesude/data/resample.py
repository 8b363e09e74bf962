"""Anti-aliased downsampling of uniformly sampled traces, shared by the loaders.

Observed traces (a membrane potential, a rate) are low-pass filtered before
new samples are taken, so that nothing above the new Nyquist frequency folds
back into the band that is kept. Inputs (a protocol's command current) are
noiseless step commands: they are not filtered but held, so each new sample is
an exact command level and a step stays one sample wide.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

#: Description of the method, stored in the attributes of every downsampled set.
DOWNSAMPLE_METHOD = (
    "observed variables: order-8 Butterworth low-pass at 0.8 x the new Nyquist "
    "frequency, zero phase (scipy.signal.sosfiltfilt) on the full trace, then "
    "sampled at window start + k * interval by linear interpolation; input "
    "variables: value in force at each new sample time, unfiltered"
)

# Butterworth low-pass applied forwards and backwards (zero phase), with its
# cut-off at 80 % of the new Nyquist frequency, the same margin as
# scipy.signal.decimate's default filter.
_FILTER_ORDER = 8
_CUTOFF_FRACTION_OF_NYQUIST = 0.8
# Extend each trace end by this many new sample intervals (odd reflection), so
# the filter's start-up transient is spent outside the recorded samples.
_PAD_NEW_INTERVALS = 10
#: Relative tolerance when asking whether a time falls on a sample.
GRID_TOLERANCE = 1e-6


def lowpass(trace: np.ndarray, interval: float, new_interval: float) -> np.ndarray:
    """Zero-phase anti-alias filter of traces ``(..., time)`` sampled every `interval`.

    `interval` and `new_interval` are in the same time units; the trace is
    returned unchanged when no downsampling is asked for.
    """
    ratio = new_interval / interval
    if ratio <= 1 + GRID_TOLERANCE:
        return trace
    cutoff = _CUTOFF_FRACTION_OF_NYQUIST / ratio  # fraction of the old Nyquist
    sos = signal.butter(_FILTER_ORDER, cutoff, output="sos")
    padlen = min(trace.shape[-1] - 1, _PAD_NEW_INTERVALS * math.ceil(ratio))
    return signal.sosfiltfilt(sos, trace, axis=-1, padlen=padlen)


def sample_positions(
    new_times: np.ndarray, first_time: float, interval: float
) -> np.ndarray:
    """Fractional positions of `new_times` on the grid ``first_time + k * interval``.

    Positions within a millionth of a sample of a whole number are snapped to
    it, so that a new time on an old sample takes that sample exactly.
    """
    position = (new_times - first_time) / interval
    nearest = np.round(position)
    return np.where(np.abs(position - nearest) < GRID_TOLERANCE, nearest, position)


def interpolate_samples(trace: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Linearly interpolate traces ``(..., time)`` at fractional sample positions."""
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, trace.shape[-1] - 1)
    fraction = position - below
    return trace[..., below] * (1 - fraction) + trace[..., above] * fraction


def hold_samples(trace: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The sample in force at each fractional position (zero-order hold)."""
    return trace[..., np.floor(position).astype(np.int64)]


def uniform_interval(times: np.ndarray) -> float | None:
    """The sampling interval of sorted `times`, or None if they are not uniform."""
    steps = np.diff(times)
    if not steps.size:
        return None
    interval = float(np.median(steps))
    if interval <= 0 or np.any(np.abs(steps - interval) > GRID_TOLERANCE * interval):
        return None
    return interval
