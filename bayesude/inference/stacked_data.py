"""All subjects' arrays stacked for one vmapped solve; padding stays out of likelihoods.

Subjects differ in length and number of sweeps. For the solve they are padded
to common shapes (the last time repeated, which adds save points but no solver
steps; the first sweep copied), while every observation is kept as a flat
vector with its subject, sweep and time index, so only real observations reach
a likelihood.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from bayesude.core.specification import ModelSpecification
from bayesude.data import select_subject
from bayesude.inference.prepared_data import PreparedData, prepare_data

#: Prior scale of initial observed states, as a fraction of the variable's range.
_INITIAL_STATE_RELATIVE_SCALE = 0.05


@dataclasses.dataclass(frozen=True)
class StackedSubjects:
    """All subjects' arrays, padded to common shapes where padding is harmless.

    Shapes use S subjects, W sweeps (the most of any subject), T times (the
    most of any subject) and J jump times (the most of any subject).

    Attributes
    ----------
    subjects
        Subject names, length S.
    prepared
        Each subject's :class:`PreparedData` (unpadded), for labels.
    arrays
        Model arguments: ``times`` (S, T), ``inputs`` {name: (S, W, T)},
        ``jump_times`` (S, J), ``first_values`` {state: (S, W)}, and per
        observed variable ``<name>:values``, ``:subject_index``,
        ``:sweep_index``, ``:time_index`` (N,) and ``:noise_scale`` (S,).
    real_sweeps
        Subject and sweep slot of every real sweep, two arrays of shape (R,).
    time_offset
        1 when a start time was prepended to every subject's times, else 0.
    """

    subjects: tuple[str, ...]
    prepared: tuple[PreparedData, ...]
    arrays: dict
    real_sweeps: tuple[np.ndarray, np.ndarray]
    time_offset: int

    @property
    def num_subjects(self) -> int:
        return len(self.subjects)


def stack_subjects(
    spec: ModelSpecification, data: xr.Dataset, t0: float | None = None
) -> StackedSubjects:
    """Prepare every subject of ``data`` and stack them for one vmapped solve.

    Parameters
    ----------
    spec
        The model specification.
    data
        Recordings, dims ``(subject, sweep, time)`` (``docs/conventions.md``).
    t0
        Start of every solve in model time units, where ``initial_state``
        applies; None starts each subject at its first observation.
    """
    subjects = tuple(str(s) for s in data["subject"].values)
    prepared = tuple(prepare_data(spec, select_subject(data, s), s) for s in subjects)
    offset = 0 if t0 is None else 1
    for subject, p in zip(subjects, prepared, strict=True):
        if t0 is not None and not t0 < p.times[0]:
            raise ValueError(
                f"Subject {subject!r}: t0={t0} must come before the first "
                f"observation at {p.times[0]} {p.time_units}; lower t0 or leave it "
                f"out to start at the first observation."
            )
    num_sweeps = max(p.num_sweeps for p in prepared)
    num_times = max(p.times.size for p in prepared) + offset

    times = np.stack([_padded_times(p.times, t0, num_times) for p in prepared])
    inputs = {
        name: np.stack(
            [_padded_input(p, name, offset, num_sweeps, num_times) for p in prepared]
        )
        for name in spec.model_inputs
    }
    arrays = {
        "times": times,
        "inputs": inputs,
        "jump_times": _padded_jump_times(prepared, times),
        "first_values": _first_values(prepared, num_sweeps),
    }
    for name in spec.observed:
        arrays.update(_stacked_observations(prepared, name, offset))
    real_subjects = np.concatenate(
        [np.full(p.num_sweeps, i) for i, p in enumerate(prepared)]
    )
    real_slots = np.concatenate([np.arange(p.num_sweeps) for p in prepared])
    return StackedSubjects(
        subjects, prepared, arrays, (real_subjects, real_slots), offset
    )


def _padded_times(times, t0, length) -> np.ndarray:
    if t0 is not None:
        times = np.concatenate([[t0], times])
    # Repeating the last time adds save points but no solver steps.
    return np.concatenate([times, np.full(length - times.size, times[-1])])


def _padded_input(p: PreparedData, name, offset, num_sweeps, num_times) -> np.ndarray:
    values = p.inputs[name].values
    if offset:
        values = np.concatenate([values[:, :1], values], axis=1)
    values = np.pad(values, ((0, 0), (0, num_times - values.shape[1])), mode="edge")
    return np.concatenate(
        [values, np.repeat(values[:1], num_sweeps - values.shape[0], axis=0)]
    )


def _padded_jump_times(prepared, times) -> np.ndarray:
    """Each subject's interior jump times, padded with its end time (a no-op)."""
    jumps = [
        j[(j > t[0]) & (j < t[-1])]
        for j, t in zip((p.jump_times() for p in prepared), times, strict=True)
    ]
    width = max(j.size for j in jumps)
    return np.stack(
        [
            np.concatenate([j, np.full(width - j.size, t[-1])])
            for j, t in zip(jumps, times, strict=True)
        ]
    ).reshape(len(prepared), width)


def _first_values(prepared, num_sweeps) -> dict[str, np.ndarray]:
    states = {v.state: v.name for v in prepared[0].observed.values()}
    return {
        state: np.stack(
            [
                np.pad(
                    p.observed[name].first_values,
                    (0, num_sweeps - p.num_sweeps),
                    mode="edge",
                )
                for p in prepared
            ]
        )
        for state, name in states.items()
    }


def _stacked_observations(prepared, name, offset) -> dict[str, np.ndarray]:
    variables = [p.observed[name] for p in prepared]
    return {
        f"{name}:values": np.concatenate([v.values for v in variables]),
        f"{name}:subject_index": np.concatenate(
            [np.full(v.values.size, i) for i, v in enumerate(variables)]
        ),
        f"{name}:sweep_index": np.concatenate([v.sweep_index for v in variables]),
        f"{name}:time_index": np.concatenate([v.time_index for v in variables])
        + offset,
        f"{name}:noise_scale": np.array(
            [float(np.std(v.values)) or 1.0 for v in variables]
        ),
        f"{name}:initial_scale": np.array(
            [
                max(_INITIAL_STATE_RELATIVE_SCALE * np.ptp(v.values), 1e-6)
                for v in variables
            ]
        ),
    }
