"""What a current-clamp reader returns: every sweep of one file at full rate."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bayesude.errors import DataValidationError
from bayesude.units import conversion_factor


@dataclasses.dataclass(frozen=True)
class RawSweeps:
    """All sweeps of one current-clamp file, in the loader's units.

    Attributes
    ----------
    time_s
        Sample times from sweep start in s, shape ``(time,)``.
    voltage_mv
        Membrane potential in mV, shape ``(sweep, time)``.
    current_pa
        Injected current (the command or stimulus) in pA, shape ``(sweep, time)``.
    sweep_numbers
        Each sweep's label in the file, shape ``(sweep,)``.
    channel
        Which channels were read, in words (stored as provenance).
    attrs
        The file's own metadata (stored as provenance).
    """

    time_s: np.ndarray
    voltage_mv: np.ndarray
    current_pa: np.ndarray
    sweep_numbers: np.ndarray
    channel: str
    attrs: dict[str, Any]


def scale_to(
    values: np.ndarray,
    units: str,
    target: str,
    *,
    file: str,
    subject: str,
    field: str,
    fix: str,
) -> np.ndarray:
    """``values`` in `units` converted to `target`, or a clear error if impossible."""
    factor = conversion_factor(units, target)
    if factor is None:
        raise DataValidationError(
            f"The {field} is in {units!r}, which cannot be converted to {target!r}.",
            fix,
            file=file,
            subject=subject,
            field=field,
        )
    return np.asarray(values, dtype=np.float64) * factor
