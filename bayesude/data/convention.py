"""The data convention every loader produces, and subject selection.

A recording set is an ``xarray.Dataset`` with dimensions
``(subject, sweep, time)``; see ``docs/conventions.md``. Loaders of tabular
sources build it from long tables (one row per sample) with
:func:`assemble_subjects`, which keeps the user's row numbers, repeated times
and each subject's initial time.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import xarray as xr

from bayesude.errors import DataValidationError

__all__ = ["ROLES", "SubjectTable", "assemble_subjects", "select_subject"]

#: Values of the ``role`` attribute of a data variable.
ROLES = ("observed", "input")


@dataclasses.dataclass(frozen=True)
class SubjectTable:
    """One subject's samples in long form, before they are placed on a grid.

    Attributes
    ----------
    name
        Subject name.
    source_file
        The file the samples came from, as the user gave it.
    time
        Sample times, shape ``(num_rows,)``, in the dataset's time units; any
        order, repeats allowed.
    sweep
        Sweep label of each row, shape ``(num_rows,)``.
    values
        ``{variable: (num_rows,)}``; NaN where a value is missing.
    row
        The user's row number of each sample, shape ``(num_rows,)``.
    t0
        Initial time of the subject's model, or None for its first sample.
    """

    name: str
    source_file: str
    time: np.ndarray
    sweep: np.ndarray
    values: dict[str, np.ndarray]
    row: np.ndarray
    t0: float | None = None


def assemble_subjects(
    tables: list[SubjectTable],
    variable_attrs: dict[str, dict[str, Any]],
    time_attrs: dict[str, Any],
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Place long tables of several subjects on one ``(subject, sweep, time)`` grid.

    The time coordinate is sorted and holds every subject's sample times; a
    time repeated ``k`` times within one subject's sweep appears ``k`` times.
    Values a subject did not record are NaN and their ``row`` is -1.

    Parameters
    ----------
    tables
        One table per subject, all with the same variables.
    variable_attrs
        ``{variable: attrs}`` with at least ``units`` and ``role``.
    time_attrs
        Attributes of the time coordinate, with at least ``units``.
    attrs
        Dataset attributes (provenance and preprocessing); dict values are
        stored as JSON.

    Returns
    -------
    xarray.Dataset
        Dimensions ``(subject, sweep, time)``; coordinates ``subject``,
        ``sweep``, ``time``, ``sweep_number (subject, sweep)``, ``row
        (subject, sweep, time)`` and ``t0 (subject,)`` (NaN where not given);
        data variables as in `variable_attrs` plus ``source_file (subject,)``.
    """
    keys = [np.stack([t.time, _occurrence(t)], axis=1) for t in tables]
    union, inverse = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
    columns = np.split(inverse.reshape(-1), np.cumsum([len(k) for k in keys])[:-1])
    sweep_labels = [np.unique(t.sweep) for t in tables]
    num_sweeps = max(len(labels) for labels in sweep_labels)
    shape = (len(tables), num_sweeps, union.shape[0])

    grids = {name: np.full(shape, np.nan) for name in variable_attrs}
    row = np.full(shape, -1, dtype=np.int64)
    sweep_number = np.full(shape[:2], -1, dtype=np.int64)
    for index, (table, column, labels) in enumerate(
        zip(tables, columns, sweep_labels, strict=True)
    ):
        position = np.searchsorted(labels, table.sweep)
        sweep_number[index, : len(labels)] = labels
        row[index, position, column] = table.row
        for name in variable_attrs:
            grids[name][index, position, column] = table.values[name]

    dims = ("subject", "sweep", "time")
    data_vars = {
        name: (dims, grid, variable_attrs[name]) for name, grid in grids.items()
    }
    data_vars["source_file"] = (("subject",), [t.source_file for t in tables])
    t0 = [np.nan if t.t0 is None else float(t.t0) for t in tables]
    return xr.Dataset(
        data_vars,
        coords={
            "subject": [t.name for t in tables],
            "sweep": np.arange(num_sweeps),
            "time": ("time", union[:, 0], time_attrs),
            "sweep_number": (("subject", "sweep"), sweep_number, _SWEEP_NUMBER_ATTRS),
            "row": (dims, row, _ROW_ATTRS),
            "t0": (("subject",), t0, {**time_attrs, **_T0_ATTRS}),
        },
        attrs={
            key: json.dumps(value, default=_json_scalar)
            if isinstance(value, dict | list)
            else value
            for key, value in attrs.items()
        },
    )


def _json_scalar(value: Any) -> Any:
    """Convert NumPy scalars and arrays found in file attributes for JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return str(value)


def _occurrence(table: SubjectTable) -> np.ndarray:
    """How many earlier rows of the same sweep share each row's time (0, 1, …)."""
    order = np.lexsort((table.row, table.time, table.sweep))
    sweep, time = table.sweep[order], table.time[order]
    starts = np.r_[True, (sweep[1:] != sweep[:-1]) | (time[1:] != time[:-1])]
    positions = np.arange(order.size)
    group_start = np.maximum.accumulate(np.where(starts, positions, 0))
    occurrence = np.empty(order.size, dtype=np.int64)
    occurrence[order] = positions - group_start
    return occurrence.astype(float)


_SWEEP_NUMBER_ATTRS = {
    "long_name": "label of the sweep in its source; -1 where the subject has "
    "fewer sweeps",
}
_ROW_ATTRS = {
    "long_name": "the sample's row number in the user's file (0 = first data "
    "row); -1 where the subject has no sample",
}
_T0_ATTRS = {"long_name": "initial time of the model; NaN: the first sample"}


def select_subject(dataset: xr.Dataset, subject: str) -> xr.Dataset:
    """Return one subject's data, trimmed to the samples it recorded.

    Parameters
    ----------
    dataset : xarray.Dataset
        Recordings with dimensions ``(subject, sweep, time)``, e.g. from
        :func:`bayesude.data.load_current_clamp`.
    subject : str
        Name of the subject to keep.

    Returns
    -------
    xarray.Dataset
        Dimensions ``(sweep, time)``; ``subject`` stays as a scalar
        coordinate. Times at which no sweep has a finite observation, and
        sweeps with no finite observation at all (padding for subjects with
        fewer sweeps), are dropped.

    Raises
    ------
    ValueError
        If `subject` is not in the dataset, or no variable has
        ``role="observed"``.
    """
    available = [str(name) for name in dataset["subject"].values]
    if subject not in available:
        raise ValueError(
            f"Subject {subject!r} is not in the dataset; the available subjects "
            f"are {', '.join(map(repr, available))}. Pass one of these names."
        )
    observed = observed_variables(dataset)
    if not observed:
        raise DataValidationError(
            "The dataset has no data variable with role='observed', so there is "
            "nothing to fit.",
            "Set attrs['role'] = 'observed' on the measured variables.",
            subject=subject,
            field="role",
        )

    one = dataset.sel(subject=subject)
    finite = np.isfinite(one[observed[0]])
    for name in observed[1:]:
        finite = finite | np.isfinite(one[name])
    return one.isel(time=finite.any("sweep").values, sweep=finite.any("time").values)


def observed_variables(dataset: xr.Dataset) -> list[str]:
    """Names of the data variables with ``role="observed"``."""
    return [
        str(name)
        for name, variable in dataset.data_vars.items()
        if variable.attrs.get("role") == "observed"
    ]
