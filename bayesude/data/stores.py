"""NetCDF and Zarr stores already laid out in the data convention, read by xarray."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayesude.data.convention import SubjectTable
from bayesude.data.tabular import Options, check_variable_attrs, finish
from bayesude.errors import DataValidationError

__all__ = ["load_dataset", "tables_from_dataset"]

_DIMS = ("subject", "sweep", "time")


def load_dataset(
    path: str | os.PathLike,
    *,
    subject: str | None = None,
    t0: float | Mapping[str, float] | None = None,
    convert_units: Mapping[str, str] | None = None,
    window: tuple[float, float] | None = None,
    downsample: float | None = None,
    errors: str = "raise",
) -> xr.Dataset:
    """Load a NetCDF file or Zarr store whose variables follow the data convention.

    Parameters
    ----------
    path
        A NetCDF file, or a Zarr store (a folder, or a path ending in
        ``.zarr``). Its data variables with a ``role`` attribute
        (``"observed"`` or ``"input"``) and ``units`` are loaded; their
        dimensions are ``time`` plus optionally ``subject`` and ``sweep``.
        The ``time`` coordinate needs ``units``; it may be unsorted and hold
        repeats. Variables without a role (metadata) are left out.
    subject
        Subject name when the store has no ``subject`` dimension (default:
        the file's stem).
    t0, convert_units, window, downsample, errors
        As for :func:`bayesude.data.load_csv`. A ``t0`` coordinate in the
        store is used when `t0` is None.

    Returns
    -------
    xarray.Dataset
        ``(subject, sweep, time)`` as in ``docs/conventions.md``; ``row`` is
        each sample's position in the store (sweep by sweep) unless the store
        has its own ``row`` coordinate.

    Raises
    ------
    FileNotFoundError
        If nothing exists at `path`.
    DataValidationError
        If xarray cannot open the store, it has no time dimension or no
        observed variable, a variable lacks units or has other dimensions,
        the time has no unit of time, or a subject is all NaN or starts
        before t0.
    """
    path = pathlib.Path(path)
    file = str(path)
    if not path.exists():
        raise FileNotFoundError(f"No NetCDF file or Zarr store at {file!r}.")
    is_zarr = path.is_dir() or path.suffix == ".zarr"
    try:
        source = xr.open_dataset(path, engine="zarr" if is_zarr else None)
    except Exception as error:  # noqa: BLE001  (backends raise many kinds)
        raise DataValidationError(
            f"xarray cannot open it as {'Zarr' if is_zarr else 'NetCDF'} "
            f"({type(error).__name__}: {error}).",
            "Check that it is complete, or write it again with xarray's to_netcdf "
            "or to_zarr.",
            file=file,
            field="file",
        ) from None
    with source:
        dataset = source.load()
    tables, variable_attrs, time_units = tables_from_dataset(
        dataset, file, subject or path.stem
    )
    options = Options(
        t0=t0,
        convert_units=dict(convert_units or {}),
        window=window,
        downsample=downsample,
        errors=errors,
    )
    attrs = {
        key: value for key, value in dataset.attrs.items() if key != "subject_errors"
    }
    return finish(
        tables,
        variable_attrs,
        time_units,
        options,
        {**attrs, "loader": "dataset", "source_files": [file]},
        file,
    )


def tables_from_dataset(
    dataset: xr.Dataset, file: str, default_subject: str
) -> tuple[list[SubjectTable], dict[str, dict[str, Any]], str]:
    """Long tables of every subject, the variables' attributes and the time units."""
    if "time" not in dataset.dims:
        raise DataValidationError(
            f"There is no 'time' dimension; the dimensions are {list(dataset.dims)}.",
            "Rename the time dimension to 'time' (dataset.rename(...)).",
            file=file,
            field="time",
        )
    names = [n for n, v in dataset.data_vars.items() if "role" in v.attrs]
    variable_attrs = {str(n): dict(dataset[n].attrs) for n in names}
    for name in names:
        extra = sorted(set(dataset[name].dims) - set(_DIMS))
        if extra or "time" not in dataset[name].dims:
            raise DataValidationError(
                f"The variable {name!r} has dimensions {dataset[name].dims}.",
                "Give it dimensions (subject, sweep, time), or a subset that "
                "includes time.",
                file=file,
                field=str(name),
            )
    time_units = dataset["time"].attrs.get("units")
    check_variable_attrs(variable_attrs, time_units, file)

    if "subject" not in dataset.dims:
        dataset = dataset.expand_dims(subject=[default_subject])
    if "sweep" not in dataset.dims:
        dataset = dataset.expand_dims(sweep=[0])
    order = ("subject", "sweep", "time")
    arrays = {n: dataset[n].broadcast_like(dataset[names[0]]) for n in names}
    arrays = {
        n: a.transpose(*order).values.astype(np.float64) for n, a in arrays.items()
    }
    time = np.asarray(dataset["time"].values, dtype=np.float64)
    num_sweeps, num_times = dataset.sizes["sweep"], dataset.sizes["time"]
    rows = (
        dataset["row"].transpose(*order).values
        if "row" in dataset.coords
        else np.broadcast_to(
            np.arange(num_sweeps * num_times).reshape(num_sweeps, num_times),
            (dataset.sizes["subject"], num_sweeps, num_times),
        )
    )
    sweep_labels = (
        dataset["sweep_number"].transpose("subject", "sweep").values
        if "sweep_number" in dataset.coords
        else np.broadcast_to(
            np.asarray(dataset["sweep"].values), (dataset.sizes["subject"], num_sweeps)
        )
    )
    source_files = _source_files(dataset, file)
    t0 = _t0(dataset)

    tables = []
    for index, name in enumerate(np.asarray(dataset["subject"].values).astype(str)):
        present = np.zeros((num_sweeps, num_times), dtype=bool)
        for values in arrays.values():
            present |= np.isfinite(values[index])
        present &= rows[index] >= 0
        sweep_position, time_position = np.nonzero(present)
        tables.append(
            SubjectTable(
                name=str(name),
                source_file=source_files[index],
                time=time[time_position],
                sweep=np.asarray(sweep_labels[index])[sweep_position].astype(np.int64),
                values={
                    n: values[index][sweep_position, time_position]
                    for n, values in arrays.items()
                },
                row=np.asarray(rows[index])[sweep_position, time_position],
                t0=t0[index],
            )
        )
    return tables, variable_attrs, str(time_units)


def _source_files(dataset: xr.Dataset, file: str) -> list[str]:
    if "source_file" in dataset.data_vars and dataset["source_file"].dims == (
        "subject",
    ):
        return [str(value) for value in dataset["source_file"].values]
    return [file] * dataset.sizes["subject"]


def _t0(dataset: xr.Dataset) -> list[float | None]:
    if "t0" not in dataset.coords:
        return [None] * dataset.sizes["subject"]
    values = np.broadcast_to(
        np.asarray(dataset["t0"].values, dtype=np.float64), (dataset.sizes["subject"],)
    )
    return [None if np.isnan(v) else float(v) for v in values]
