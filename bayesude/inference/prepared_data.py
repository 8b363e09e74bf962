"""One subject's recording turned into the arrays a NumPyro model needs.

Only finite observations are kept, as flat vectors with their sweep and time
indices, so padding and missing samples never enter a likelihood and nothing
is imputed. The observations keep the user's row order (the data's ``row``
coordinate, else their position in the data), while the solve runs on the
sorted, distinct times from the initial time ``t0`` on: shuffled rows get the
same likelihood as sorted ones, repeated times share one solved state, and an
observation at ``t0`` is the initial state itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from bayesude.core.inputs import SampledInput
from bayesude.core.specification import ModelSpecification
from bayesude.errors import DataValidationError
from bayesude.units import conversion_factor


@dataclasses.dataclass(frozen=True)
class ObservedVariable:
    """The finite observations of one data variable.

    Attributes
    ----------
    name, state, units
        Data variable name, the state it measures, and its units.
    values, sweep_index, time_index
        Shape ``(num_observations,)`` each, in the user's row order;
        ``time_index`` points into :attr:`PreparedData.times`.
    row
        The user's row number of each observation, shape ``(num_observations,)``.
    first_values
        Earliest finite value in each sweep, shape ``(num_sweeps,)``.
    """

    name: str
    state: str
    units: str
    values: np.ndarray
    sweep_index: np.ndarray
    time_index: np.ndarray
    row: np.ndarray
    first_values: np.ndarray

    @property
    def value_range(self) -> tuple[float, float]:
        return float(self.values.min()), float(self.values.max())


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Arrays of one subject, in model time units.

    Attributes
    ----------
    times
        Times at which the solution is needed, shape ``(num_times,)``,
        strictly increasing; the first is the initial time t0.
    sweeps
        Sweep labels, shape ``(num_sweeps,)``.
    observed
        One :class:`ObservedVariable` per observed data variable.
    inputs
        One :class:`SampledInput` per model input.
    time_units
        Units of ``times``.
    """

    times: np.ndarray
    sweeps: np.ndarray
    observed: dict[str, ObservedVariable]
    inputs: dict[str, SampledInput]
    time_units: str

    @property
    def num_sweeps(self) -> int:
        return int(self.sweeps.shape[0])

    def jump_times(self) -> np.ndarray:
        jumps = [sampled.jump_times() for sampled in self.inputs.values()]
        return np.unique(np.concatenate(jumps)) if jumps else np.zeros(0)

    def variable_ranges(self) -> dict[str, tuple[float, float]]:
        """``(low, high)`` of every observed state and input, keyed by model name."""
        ranges = {v.state: v.value_range for v in self.observed.values()}
        for name, sampled in self.inputs.items():
            finite = sampled.values[np.isfinite(sampled.values)]
            ranges[name] = (float(finite.min()), float(finite.max()))
        return ranges


def prepare_data(
    spec: ModelSpecification, data: xr.Dataset, subject: str
) -> PreparedData:
    """Select what ``spec`` needs from one subject's data, with clear errors.

    Parameters
    ----------
    spec
        The model specification.
    data
        One subject's data with dimensions ``(sweep, time)`` (or ``(time,)``,
        treated as a single sweep); see ``docs/conventions.md``. The time
        coordinate may be unsorted and may repeat; a ``row`` coordinate gives
        the user's row order, and a ``t0`` coordinate the initial time.
    subject
        The subject's name, for error messages.

    Raises
    ------
    DataValidationError
        If a variable the model needs is missing, no observation is finite,
        an observation lies before t0, the time units cannot be converted to
        the model's, or an input is missing where the model is solved.
    """
    if "sweep" not in data.dims:
        data = data.expand_dims(sweep=[0])
    data = data.transpose("sweep", "time", ...)
    observed_names = list(spec.observed)
    driven = {stimulus.input for stimulus in spec.stimuli}
    input_map = {
        name: spec.inputs.get(name, name)
        for name in spec.model_inputs
        if name not in driven
    }
    _check_variables_present(data, observed_names + list(input_map.values()), subject)

    factor, time_units = _time_factor(data, spec, subject)
    data_times = np.asarray(data["time"].values, dtype=float) * factor
    finite = {name: np.isfinite(data[name].values) for name in observed_names}
    if not any(mask.any() for mask in finite.values()):
        raise DataValidationError(
            f"There is no finite observation of {', '.join(observed_names)}.",
            "Remove the subject, or check its file.",
            subject=subject,
            field=", ".join(observed_names),
        )
    rows = _rows(data)
    t0 = _initial_time(data, factor)
    observed_times = np.concatenate(
        [data_times[m.nonzero()[1]] for m in finite.values()]
    )
    if t0 is not None:
        _check_not_before_t0(data, finite, rows, data_times, t0, subject)
    start = observed_times.min() if t0 is None else t0
    times = np.unique(np.append(observed_times, start))

    observed = {
        name: _observed_variable(
            data, name, spec.observed[name], rows, data_times, times
        )
        for name in observed_names
    }
    inputs = {
        model_name: _sampled_input(data, data_name, data_times, times, spec, subject)
        for model_name, data_name in input_map.items()
    }
    return PreparedData(
        times=times,
        sweeps=np.asarray(data["sweep"].values),
        observed=observed,
        inputs=inputs,
        time_units=time_units,
    )


def _check_variables_present(data: xr.Dataset, names: list[str], subject: str) -> None:
    missing = [name for name in names if name not in data.data_vars]
    if missing:
        raise DataValidationError(
            f"The data have no variable(s) {missing}, which the model needs. "
            f"Available variables: {sorted(map(str, data.data_vars))}.",
            "Map the model's names to the data's with 'observed' and 'inputs'.",
            subject=subject,
            field=missing[0],
        )


def _time_factor(
    data: xr.Dataset, spec: ModelSpecification, subject: str
) -> tuple[float, str]:
    """Factor from the data's time units to the model's, and the model's units."""
    data_units = str(data["time"].attrs.get("units", ""))
    model_units = spec.time_units
    if model_units is None:
        return 1.0, data_units or "1"
    factor = conversion_factor(data_units, model_units) if data_units else None
    if factor is None:
        raise DataValidationError(
            f"The data's time is in {data_units or 'no units'!r}, but "
            f"{spec.mechanistic} works in {model_units!r}, and the one cannot be "
            "converted to the other.",
            f"Set the time coordinate's 'units' attribute to the units it is in "
            f"(e.g. {model_units!r}, 's' or 'ms').",
            subject=subject,
            field="time",
        )
    return factor, model_units


def _rows(data: xr.Dataset) -> np.ndarray:
    """The user's row number of every sample, shape ``(sweep, time)``."""
    shape = (data.sizes["sweep"], data.sizes["time"])
    if "row" in data.coords:
        return np.broadcast_to(data["row"].transpose("sweep", "time").values, shape)
    return np.arange(shape[0] * shape[1]).reshape(shape)


def _initial_time(data: xr.Dataset, factor: float) -> float | None:
    if "t0" not in data.coords:
        return None
    t0 = float(np.asarray(data["t0"].values).reshape(-1)[0])
    return None if np.isnan(t0) else t0 * factor


def _check_not_before_t0(data, finite, rows, data_times, t0, subject) -> None:
    for name, mask in finite.items():
        sweep, position = np.nonzero(mask & (data_times < t0)[None, :])
        if sweep.size:
            raise DataValidationError(
                f"Row {int(rows[sweep[0], position[0]])} of {name!r} has time "
                f"{data['time'].values[position[0]]:g}, before t0 = "
                f"{data['t0'].values.reshape(-1)[0]:g}; the model starts at t0.",
                "Remove the row, correct its time, or set t0 no later than the "
                "earliest time.",
                subject=subject,
                field="time",
            )


def _observed_variable(data, name, state, rows, data_times, times) -> ObservedVariable:
    values = np.asarray(data[name].values, dtype=float)
    sweep_index, position = np.nonzero(np.isfinite(values))
    row = np.asarray(rows)[sweep_index, position]
    order = np.argsort(row, kind="stable")
    sweep_index, position, row = sweep_index[order], position[order], row[order]
    return ObservedVariable(
        name=name,
        state=state,
        units=str(data[name].attrs.get("units", "")),
        values=values[sweep_index, position],
        sweep_index=sweep_index,
        time_index=np.searchsorted(times, data_times[position]),
        row=row,
        first_values=_earliest_values(values, data_times),
    )


def _earliest_values(values: np.ndarray, data_times: np.ndarray) -> np.ndarray:
    """Each sweep's finite value at its earliest time (the mean for empty sweeps)."""
    by_time = values[:, np.argsort(data_times, kind="stable")]
    first = np.array(
        [
            row[np.isfinite(row)][0] if np.isfinite(row).any() else np.nan
            for row in by_time
        ]
    )
    return np.where(np.isfinite(first), first, np.nanmean(values))


def _sampled_input(data, name, data_times, times, spec, subject) -> SampledInput:
    """The input at every solve time: the first sample at each distinct time."""
    order = np.argsort(data_times, kind="stable")
    sorted_times = data_times[order]
    position = np.searchsorted(sorted_times, times)
    found = (position < sorted_times.size) & (
        sorted_times[np.minimum(position, sorted_times.size - 1)] == times
    )
    values = np.asarray(data[name].values, dtype=float)[:, order]
    values = values[:, np.minimum(position, sorted_times.size - 1)]
    missing = ~found[None, :] | ~np.isfinite(values)
    if missing.any():
        sweep, index = np.argwhere(missing)[0]
        raise DataValidationError(
            f"The input {name!r} has no value at time {times[index]:g} of sweep "
            f"{int(data['sweep'].values[sweep])}, where the model is solved (an "
            "observation time or t0).",
            "Give the input a sample at t0 and at every observation time, or crop "
            "the window.",
            subject=subject,
            field=name,
        )
    return SampledInput(
        times=times, values=values, interpolation=spec.input_interpolation
    )
