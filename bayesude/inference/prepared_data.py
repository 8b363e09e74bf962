"""One subject's recording turned into the arrays a NumPyro model needs.

Only finite observations are kept, as flat vectors with their sweep and time
indices, so padding and missing samples never enter a likelihood.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from bayesude.core.inputs import SampledInput
from bayesude.core.specification import ModelSpecification

#: Factors converting data time units to model time units.
_TIME_UNIT_FACTORS = {("s", "ms"): 1e3, ("ms", "s"): 1e-3}


@dataclasses.dataclass(frozen=True)
class ObservedVariable:
    """The finite observations of one data variable.

    Attributes
    ----------
    name, state, units
        Data variable name, the state it measures, and its units.
    values, sweep_index, time_index
        Shape ``(num_observations,)`` each.
    first_values
        First finite value in each sweep, shape ``(num_sweeps,)``.
    """

    name: str
    state: str
    units: str
    values: np.ndarray
    sweep_index: np.ndarray
    time_index: np.ndarray
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
        Times at which the solution is needed, shape ``(num_times,)``.
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
        treated as a single sweep); see ``docs/conventions.md``.
    subject
        The subject's name, for error messages.
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

    has_observation = np.zeros(data.sizes["time"], dtype=bool)
    for name in observed_names:
        has_observation |= np.isfinite(data[name].values).any(axis=0)
    if not has_observation.any():
        raise ValueError(
            f"Subject {subject!r} has no finite observation of "
            f"{', '.join(observed_names)}; remove the subject or check its file."
        )
    data = data.isel(time=np.flatnonzero(has_observation))
    times, time_units = _model_times(data, spec, subject)

    observed = {
        name: _observed_variable(data, name, spec.observed[name])
        for name in observed_names
    }
    inputs = {
        model_name: _sampled_input(data, data_name, times, spec, subject)
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
        raise ValueError(
            f"Subject {subject!r}: the data have no variable(s) {missing}; the model "
            f"needs them. Available variables: {sorted(map(str, data.data_vars))}. "
            f"Map the model's names to the data's with 'observed' and 'inputs'."
        )


def _model_times(
    data: xr.Dataset, spec: ModelSpecification, subject: str
) -> tuple[np.ndarray, str]:
    times = np.asarray(data["time"].values, dtype=float)
    if np.any(np.diff(times) <= 0):
        raise ValueError(
            f"Subject {subject!r}: the time coordinate must be strictly increasing."
        )
    data_units = str(data["time"].attrs.get("units", ""))
    model_units = spec.time_units
    if model_units is None or data_units == model_units:
        return times, data_units or "1"
    factor = _TIME_UNIT_FACTORS.get((data_units, model_units))
    if factor is None:
        raise ValueError(
            f"Subject {subject!r}: the data's time is in {data_units or 'no units'!r} "
            f"but {spec.mechanistic} works in {model_units!r}; set the time "
            f"coordinate's 'units' attribute to {model_units!r} (or 's' or 'ms')."
        )
    return times * factor, model_units


def _observed_variable(data: xr.Dataset, name: str, state: str) -> ObservedVariable:
    values = np.asarray(data[name].values, dtype=float)
    sweep_index, time_index = np.nonzero(np.isfinite(values))
    first_values = np.array(
        [
            row[np.isfinite(row)][0] if np.isfinite(row).any() else np.nan
            for row in values
        ]
    )
    return ObservedVariable(
        name=name,
        state=state,
        units=str(data[name].attrs.get("units", "")),
        values=values[sweep_index, time_index],
        sweep_index=sweep_index,
        time_index=time_index,
        first_values=np.where(
            np.isfinite(first_values), first_values, np.nanmean(values)
        ),
    )


def _sampled_input(
    data: xr.Dataset,
    name: str,
    times: np.ndarray,
    spec: ModelSpecification,
    subject: str,
) -> SampledInput:
    values = np.asarray(data[name].values, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(
            f"Subject {subject!r}: the input {name!r} has missing values at times "
            f"where the subject was observed; an input must be known wherever the "
            f"model is solved. Fill the protocol or crop the window."
        )
    return SampledInput(
        times=times, values=values, interpolation=spec.input_interpolation
    )
