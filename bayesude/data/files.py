"""Many subjects from a folder or a glob of files, one subject per file."""

from __future__ import annotations

import glob
import json
import os
import pathlib
from typing import Any

import xarray as xr

from bayesude.data.convention import assemble_subjects
from bayesude.data.current_clamp import load_current_clamp
from bayesude.data.stores import load_dataset, tables_from_dataset
from bayesude.data.tables import load_csv
from bayesude.errors import DataValidationError

__all__ = ["LOADERS", "load_files", "matching_files"]

#: Loader names, as in a workflow's ``data.loader``.
LOADERS = ("current_clamp", "abf", "nwb", "csv", "netcdf", "zarr")

_AUTO = {".abf": "abf", ".nwb": "nwb", ".csv": "csv", ".nc": "netcdf", ".zarr": "zarr"}


def matching_files(pattern: str | os.PathLike) -> list[pathlib.Path]:
    """The files a folder, a glob pattern or a single path names, sorted.

    Raises
    ------
    FileNotFoundError
        If nothing matches.
    """
    path = pathlib.Path(pattern)
    if path.is_dir() and path.suffix != ".zarr":
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in _AUTO)
    else:
        found = sorted(pathlib.Path(p) for p in glob.glob(os.fspath(pattern)))
    if not found:
        raise FileNotFoundError(
            f"No data file matches {os.fspath(pattern)!r}; check the folder or the "
            f"glob pattern (files ending in {', '.join(_AUTO)} are read from a "
            "folder)."
        )
    return found


def load_files(
    pattern: str | os.PathLike, *, loader: str = "auto", **options: Any
) -> xr.Dataset:
    """Load every file of a folder or glob pattern, one subject per file.

    Parameters
    ----------
    pattern
        A folder (every ``.abf``, ``.nwb``, ``.csv``, ``.nc`` and ``.zarr``
        in it), a glob pattern (``"cells/*.abf"``) or one path.
    loader
        One of :data:`LOADERS`, or ``"auto"``: by suffix (``.abf`` → abf,
        ``.nwb`` → nwb, ``.csv`` → csv, ``.nc`` → netcdf, ``.zarr`` → zarr).
        Current-clamp NetCDF files (``voltage`` and ``command_current`` in
        the shipped layout) need ``loader="current_clamp"``.
    **options
        Passed to the loader: :func:`load_current_clamp`'s keywords for
        current-clamp formats, :func:`load_csv`'s or :func:`load_dataset`'s
        otherwise.

    Returns
    -------
    xarray.Dataset
        All subjects on one grid. Current-clamp subjects are named after the
        file's stem; CSV and NetCDF/Zarr files keep their own subject names
        (their stem when they have none), which must not repeat across files.
    """
    files = matching_files(pattern)
    kinds = {_loader_of(file, loader) for file in files}
    if len(kinds) > 1:
        raise DataValidationError(
            f"The files matching {os.fspath(pattern)!r} need different loaders "
            f"({sorted(kinds)}).",
            "Match files of one format only, or set the loader.",
            field="loader",
        )
    kind = kinds.pop()
    if kind in ("current_clamp", "abf", "nwb"):
        return load_current_clamp(
            {file.stem: {"file": str(file)} for file in files},
            format="auto" if kind == "current_clamp" else kind,
            **options,
        )
    load = load_csv if kind == "csv" else load_dataset
    return combine([load(file, **options) for file in files])


def _loader_of(file: pathlib.Path, loader: str) -> str:
    if loader != "auto":
        if loader not in LOADERS:
            raise ValueError(
                f"loader must be 'auto' or one of {LOADERS}, got {loader!r}."
            )
        return loader
    kind = _AUTO.get(file.suffix.lower())
    if kind is None:
        raise DataValidationError(
            f"The suffix {file.suffix!r} names no known format.",
            f"Use files ending in {', '.join(_AUTO)}, or set the loader.",
            file=file,
            field="loader",
        )
    return kind


def combine(datasets: list[xr.Dataset]) -> xr.Dataset:
    """Put the subjects of several loaded datasets on one grid.

    The datasets must have the same variables, units and time units; their
    provenance attributes are kept per source file.
    """
    first = datasets[0]
    first_roles = {n for n, v in first.data_vars.items() if "role" in v.attrs}
    tables, names = [], set()
    for dataset in datasets:
        file = _source_file(dataset)
        found, attrs, units = tables_from_dataset(dataset, file, "subject")
        if set(attrs) != first_roles or units != str(first["time"].attrs["units"]):
            raise DataValidationError(
                "The files do not share the same variables and time units.",
                "Load files of different layouts separately.",
                file=file,
            )
        for table in found:
            if table.name in names:
                raise DataValidationError(
                    f"The subject {table.name!r} appears in more than one file.",
                    "Give each file's subject its own name.",
                    file=table.source_file,
                    subject=table.name,
                )
            names.add(table.name)
        tables.extend(found)
    variable_attrs = {n: dict(first[n].attrs) for n in tables[0].values}
    errors = {}
    for dataset in datasets:
        errors.update(json.loads(dataset.attrs.get("subject_errors", "{}")))
    return assemble_subjects(
        tables,
        variable_attrs,
        dict(first["time"].attrs),
        {
            "loader": first.attrs.get("loader", ""),
            "source_files": [t.source_file for t in tables],
            "per_file_attributes": {_source_file(d): dict(d.attrs) for d in datasets},
            "subject_errors": errors,
        },
    )


def _source_file(dataset: xr.Dataset) -> str:
    """The one file a single-file dataset was loaded from."""
    return json.loads(dataset.attrs.get("source_files", '[""]'))[0]
