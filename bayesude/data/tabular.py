"""Preprocessing shared by the loaders of long tables (CSV files, NetCDF/Zarr stores).

Each loader reads its file into :class:`~bayesude.data.convention.SubjectTable`
objects in the file's own units; :func:`finish` then checks them, converts
units, applies the initial time, crops a window, downsamples with
anti-aliasing, places them on one grid and records what it did.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayesude.data import resample
from bayesude.data.convention import ROLES, SubjectTable, assemble_subjects
from bayesude.errors import DataValidationError
from bayesude.units import conversion_factor, is_time_unit


@dataclasses.dataclass(frozen=True)
class Options:
    """Preprocessing asked for by the user; every field is recorded in the result.

    Attributes
    ----------
    t0
        Initial time of every subject's model (one number, or one per subject
        name), in the output time units; None: each subject's first sample.
    convert_units
        ``{variable or "time": target units}``: values are converted to these.
    window
        ``(start, end)`` in output time units; samples with ``start <= t < end``
        are kept.
    downsample
        New sampling interval in output time units (anti-aliased).
    errors
        ``"raise"`` or ``"collect"`` (see :func:`bayesude.data.load_csv`).
    """

    t0: float | Mapping[str, float] | None = None
    convert_units: Mapping[str, str] = dataclasses.field(default_factory=dict)
    window: tuple[float, float] | None = None
    downsample: float | None = None
    errors: str = "raise"

    def __post_init__(self) -> None:
        if self.errors not in ("raise", "collect"):
            raise ValueError(
                f"errors must be 'raise' or 'collect', got {self.errors!r}."
            )
        if self.window is not None:
            start, end = (float(edge) for edge in self.window)
            if not (math.isfinite(start) and math.isfinite(end) and start < end):
                raise ValueError(
                    f"window must be a pair (start, end) with start < end, got "
                    f"{self.window!r}."
                )
        if self.downsample is not None and not (
            math.isfinite(self.downsample) and self.downsample > 0
        ):
            raise ValueError(
                f"downsample must be a positive interval, got {self.downsample!r}."
            )

    def as_attrs(self) -> dict[str, Any]:
        return {
            "t0_option": _attribute(self.t0),
            "convert_units": dict(self.convert_units),
            "window": list(self.window) if self.window is not None else "none",
            "downsample": self.downsample if self.downsample is not None else "none",
        }


#: Units strings accepted for the time of a dimensionless model.
DIMENSIONLESS_TIME = ("1", "dimensionless")


def check_variable_attrs(
    variable_attrs: dict[str, dict[str, Any]], time_units: Any, file: str
) -> None:
    """Raise unless every variable has units and a role, and time has time units."""
    if time_units in (None, ""):
        raise DataValidationError(
            "The time has no units.",
            "State them (e.g. 'ms', 's', 'year') in the units row or sidecar, or "
            "in the time coordinate's 'units' attribute.",
            file=file,
            field="time",
        )
    # Dimensionless time ("1") is for dimensionless models such as
    # FitzHugh-Nagumo; prepare_data refuses it for a model that has units.
    if str(time_units) not in DIMENSIONLESS_TIME and not is_time_unit(str(time_units)):
        raise DataValidationError(
            f"The time has units {time_units!r}, which is not a unit of time.",
            "Give the time's units as one pint understands, e.g. 'ms', 's', "
            "'min', 'hour', 'day' or 'year', or '1' for a dimensionless model.",
            file=file,
            field="time",
        )
    for name, attrs in variable_attrs.items():
        if attrs.get("units") in (None, ""):
            raise DataValidationError(
                f"The variable {name!r} has no units.",
                "State its units in the units row or sidecar (or its 'units' "
                "attribute); use '1' for a dimensionless quantity.",
                file=file,
                field=name,
            )
        if attrs.get("role") not in ROLES:
            raise DataValidationError(
                f"The variable {name!r} has role {attrs.get('role')!r}.",
                f"Set its role to one of {list(ROLES)}.",
                file=file,
                field=name,
            )
    if not any(attrs["role"] == "observed" for attrs in variable_attrs.values()):
        raise DataValidationError(
            "No variable has role 'observed', so there is nothing to fit.",
            "Mark the measured variables as observed.",
            file=file,
            field="role",
        )


def finish(
    tables: list[SubjectTable],
    variable_attrs: dict[str, dict[str, Any]],
    time_units: str,
    options: Options,
    attrs: dict[str, Any],
    file: str,
) -> xr.Dataset:
    """Preprocess the subjects' tables and place them on one grid.

    Subject-level problems (all-NaN subject, time before t0, a window with no
    sample) raise, or with ``errors="collect"`` drop that subject and are
    recorded in the attribute ``subject_errors``.
    """
    time_units, time_factor = _target_units("time", time_units, options, file)
    variable_attrs = dict(variable_attrs)
    factors = {}
    for name, variable in variable_attrs.items():
        units, factors[name] = _target_units(name, variable["units"], options, file)
        variable_attrs[name] = {**variable, "units": units}

    kept, problems = [], {}
    for table in tables:
        try:
            table = _convert(table, time_factor, factors, options)
            kept.append(_prepare_subject(table, variable_attrs, options))
        except DataValidationError as error:
            if options.errors == "raise":
                raise
            problems[table.name] = str(error)
    if not kept:
        raise DataValidationError(
            f"No subject could be used: {problems}",
            "Fix the problems listed for each subject.",
        )
    return assemble_subjects(
        kept,
        variable_attrs,
        {"units": time_units, "long_name": "time"},
        {**attrs, **options.as_attrs(), "subject_errors": problems},
    )


def _target_units(
    name: str, units: str, options: Options, file: str | None
) -> tuple[str, float]:
    target = options.convert_units.get(name)
    if target is None:
        return units, 1.0
    factor = conversion_factor(units, target)
    if factor is None:
        raise DataValidationError(
            f"The {name!r} values are in {units!r}, which cannot be converted to "
            f"{target!r}.",
            "Ask for units of the same kind (e.g. 'mV' from 'V', 'ms' from 's'), "
            "or correct the units stated in the file.",
            file=file,
            field=name,
        )
    return target, factor


def _convert(table, time_factor, factors, options) -> SubjectTable:
    """The table in output units; t0 from the options, else from the file."""
    t0 = options.t0.get(table.name) if isinstance(options.t0, Mapping) else options.t0
    if t0 is None and table.t0 is not None:
        t0 = table.t0 * time_factor
    return dataclasses.replace(
        table,
        time=table.time * time_factor,
        values={name: values * factors[name] for name, values in table.values.items()},
        t0=None if t0 is None else float(t0),
    )


def _prepare_subject(table, variable_attrs, options) -> SubjectTable:
    where = {"file": table.source_file, "subject": table.name}
    observed = [n for n, a in variable_attrs.items() if a["role"] == "observed"]
    if not any(np.isfinite(table.values[name]).any() for name in observed):
        raise DataValidationError(
            f"Every value of the observed variable(s) {observed} is missing (NaN).",
            "Remove the subject, or check that its column holds numbers.",
            field=", ".join(observed),
            **where,
        )
    if table.t0 is not None and np.any(table.time < table.t0):
        first = int(np.argmax(table.time < table.t0))
        raise DataValidationError(
            f"Row {int(table.row[first])} has time {table.time[first]:g}, before "
            f"t0 = {table.t0:g}; the model starts at t0, so it cannot predict it.",
            "Remove the row, correct its time, or set t0 no later than the "
            "earliest time.",
            field="time",
            **where,
        )
    if options.window is not None:
        table = _crop(table, options.window, where)
    if options.downsample is not None:
        table = _downsample(table, variable_attrs, options.downsample, where)
    return table


def _crop(table, window, where) -> SubjectTable:
    start, end = window
    keep = (table.time >= start) & (table.time < end)
    if not keep.any():
        raise DataValidationError(
            f"No sample lies in the window [{start:g}, {end:g}); the subject's times "
            f"span {table.time.min():g} to {table.time.max():g}.",
            "Choose a window inside that range.",
            field="window",
            **where,
        )
    return dataclasses.replace(
        table,
        time=table.time[keep],
        sweep=table.sweep[keep],
        row=table.row[keep],
        values={name: values[keep] for name, values in table.values.items()},
    )


def _downsample(table, variable_attrs, interval, where) -> SubjectTable:
    """Anti-aliased downsampling of every sweep onto ``first + k * interval``."""
    times, sweeps, rows, values = [], [], [], {name: [] for name in table.values}
    for label in np.unique(table.sweep):
        order = np.flatnonzero(table.sweep == label)
        order = order[np.argsort(table.time[order], kind="stable")]
        time = table.time[order]
        old = resample.uniform_interval(time)
        finite = all(np.isfinite(table.values[n][order]).all() for n in table.values)
        if old is None or not finite:
            raise DataValidationError(
                f"Sweep {label} is not sampled uniformly without gaps, so it cannot "
                "be downsampled with an anti-alias filter.",
                "Leave out downsample, or fill the gaps and repeated times first.",
                field="downsample",
                **where,
            )
        if interval < old * (1 - resample.GRID_TOLERANCE):
            raise DataValidationError(
                f"downsample={interval:g} is finer than the sampling interval {old:g}.",
                f"Pass downsample >= {old:g}.",
                field="downsample",
                **where,
            )
        new_times = time[0] + interval * np.arange(
            math.floor(round((time[-1] - time[0]) / interval, 6)) + 1
        )
        position = resample.sample_positions(new_times, time[0], old)
        for name, series in table.values.items():
            trace = series[order]
            if variable_attrs[name]["role"] == "observed":
                new = resample.interpolate_samples(
                    resample.lowpass(trace, old, interval), position
                )
            else:
                new = resample.hold_samples(trace, position)
            values[name].append(new)
        times.append(new_times)
        sweeps.append(np.full(new_times.size, label))
        rows.append(np.arange(new_times.size))
    return dataclasses.replace(
        table,
        time=np.concatenate(times),
        sweep=np.concatenate(sweeps),
        row=np.concatenate(rows),
        values={name: np.concatenate(parts) for name, parts in values.items()},
    )


def _attribute(value: Any) -> Any:
    """An option as a NetCDF-storable attribute ("none" for None)."""
    if value is None:
        return "none"
    return dict(value) if isinstance(value, Mapping) else value
