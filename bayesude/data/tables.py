"""Tidy CSV tables: one row per sample, ``subject, time, <variables>``.

Units come from a units row (the line after the header, whose time cell is
not a number) or from a YAML/JSON sidecar beside the file (``<name>.yaml``,
``<name>.yml`` or ``<name>.json``), which can also rename columns, mark
variables as inputs and give the subject's name and initial time.
"""

from __future__ import annotations

import csv
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import pydantic
import xarray as xr
import yaml

from bayesude.data.convention import SubjectTable
from bayesude.data.tabular import Options, check_variable_attrs, finish
from bayesude.errors import DataValidationError

__all__ = ["TableLayout", "load_csv"]

#: Cells read as a missing value (NaN): masked out of the likelihood, never imputed.
MISSING_CELLS = ("", "nan", "NaN", "NA", "N/A", "null")
_SIDECAR_SUFFIXES = (".yaml", ".yml", ".json")


class TableLayout(pydantic.BaseModel):
    """How to read a CSV table; the contents of its sidecar file.

    Attributes
    ----------
    time_column, subject_column, sweep_column
        Column names; the subject and sweep columns are optional in the file.
    subject
        Subject name for a file without a subject column (default: the file's
        stem).
    units
        ``{column: units}``; completes or overrides the units row.
    roles
        ``{column: "observed" | "input"}``; columns not named are observed.
    rename
        ``{column: variable name}`` in the dataset.
    t0
        Initial time of the model, in the file's time units.
    attributes
        Free-form provenance (source, licence, …) copied into the dataset.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    time_column: str = "time"
    subject_column: str = "subject"
    sweep_column: str = "sweep"
    subject: str | None = None
    units: dict[str, str] = {}
    roles: dict[str, Literal["observed", "input"]] = {}
    rename: dict[str, str] = {}
    t0: float | None = None
    attributes: dict[str, str] = {}


def load_csv(
    path: str | os.PathLike,
    *,
    sidecar: str | os.PathLike | None = None,
    t0: float | Mapping[str, float] | None = None,
    convert_units: Mapping[str, str] | None = None,
    window: tuple[float, float] | None = None,
    downsample: float | None = None,
    errors: str = "raise",
) -> xr.Dataset:
    """Load a tidy CSV table of one or many subjects into the data convention.

    Parameters
    ----------
    path
        The CSV file. Its header names the columns: ``subject`` (optional),
        ``sweep`` (optional), ``time`` and one column per variable; names can
        differ when a sidecar maps them. Rows may come in any order; repeated
        times are kept. Empty cells and ``NaN``/``NA`` are missing values.
    sidecar
        YAML or JSON file with a :class:`TableLayout`; by default the file
        beside `path` with the same stem and suffix ``.yaml``, ``.yml`` or
        ``.json``, if there is one.
    t0
        Initial time of the model (after `convert_units`), for every subject
        or by subject name; overrides the sidecar. Default: each subject's
        first time.
    convert_units
        ``{variable or "time": units}`` to convert to, e.g. ``{"time": "ms"}``.
    window
        ``(start, end)``: keep samples with ``start <= time < end``.
    downsample
        New sampling interval (anti-aliased); needs uniform, gap-free sweeps.
    errors
        ``"raise"``: a subject that cannot be used raises. ``"collect"``: it is
        left out and its message recorded in the attribute ``subject_errors``.

    Returns
    -------
    xarray.Dataset
        ``(subject, sweep, time)`` as in ``docs/conventions.md``; ``row``
        holds each sample's data-row number (0 = first row after the header
        and units row), so results can be returned in the file's order.

    Raises
    ------
    FileNotFoundError
        If the file or a named sidecar does not exist.
    DataValidationError
        For an empty file, a missing column, rows with a different number of
        cells from the header, missing or wrong units, a non-numeric cell, an
        all-NaN subject or a time before t0; the message names the file, the
        subject, the column or line, and the fix.
    """
    path = pathlib.Path(path)
    file = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"No CSV file at {file!r}; check the path.")
    layout, sidecar_path = _read_layout(path, sidecar)
    header, units_row, rows, first_line = _read_rows(path, layout)
    columns = _columns(header, layout, file)
    frame = pd.DataFrame(rows, columns=header)

    units = {**dict(zip(header, units_row or [], strict=False)), **layout.units}
    variable_attrs = {
        layout.rename.get(column, column): {
            "units": units.get(column, "").strip(),
            "role": layout.roles.get(column, "observed"),
            "source_column": column,
        }
        for column in columns["variables"]
    }
    time_units = units.get(layout.time_column, "").strip()
    check_variable_attrs(variable_attrs, time_units, file)

    numbers = {
        column: _numeric_column(frame, column, file, first_line)
        for column in [layout.time_column, *columns["variables"]]
    }
    tables = _subject_tables(frame, numbers, columns, layout, path, first_line)
    options = Options(
        t0=t0,
        convert_units=dict(convert_units or {}),
        window=window,
        downsample=downsample,
        errors=errors,
    )
    return finish(
        tables,
        variable_attrs,
        time_units,
        options,
        {
            "loader": "csv",
            "source_files": [file],
            "sidecar": str(sidecar_path) if sidecar_path else "none",
            **layout.attributes,
        },
        file,
    )


def _read_layout(path, sidecar) -> tuple[TableLayout, pathlib.Path | None]:
    if sidecar is None:
        found = [path.with_suffix(s) for s in _SIDECAR_SUFFIXES]
        sidecar = next((p for p in found if p.is_file()), None)
        if sidecar is None:
            return TableLayout(), None
    sidecar = pathlib.Path(sidecar)
    if not sidecar.is_file():
        raise FileNotFoundError(f"No sidecar file at {str(sidecar)!r}; check the path.")
    try:
        contents = yaml.safe_load(sidecar.read_text()) or {}
        return TableLayout.model_validate(contents), sidecar
    except (yaml.YAMLError, pydantic.ValidationError) as error:
        raise DataValidationError(
            f"The sidecar is not a valid table layout: {error}",
            f"Use only the keys {sorted(TableLayout.model_fields)}, as documented "
            "in docs/conventions.md.",
            file=sidecar,
            field="sidecar",
        ) from None


def _read_rows(path, layout):
    """Header, units row (or None), data rows and the line number of the first."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        lines = [row for row in csv.reader(handle)]
    file = str(path)
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise DataValidationError(
            "The file is empty.",
            "Write a header line (e.g. 'subject,time,voltage'), a units line and "
            "one line per sample.",
            file=file,
        )
    header = [cell.strip() for cell in lines[0]]
    body = lines[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header) and any(cell.strip() for cell in row):
            raise DataValidationError(
                f"Line {number} has {len(row)} cells but the header has "
                f"{len(header)} ({', '.join(header)}).",
                "Give every line one cell per column; leave a cell empty for a "
                "missing value.",
                file=file,
                field=f"line {number}",
            )
    body = [row for row in body if any(cell.strip() for cell in row)]
    units_row, first_line = None, 2
    if body and layout.time_column in header:
        cell = body[0][header.index(layout.time_column)].strip()
        if not _is_number(cell):
            units_row, body, first_line = [c.strip() for c in body[0]], body[1:], 3
    if not body:
        raise DataValidationError(
            "The file has a header but no data rows.",
            "Add one line per sample below the header (and units row).",
            file=file,
        )
    return header, units_row, body, first_line


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _columns(header, layout, file) -> dict[str, Any]:
    if len(set(header)) != len(header):
        repeated = sorted({c for c in header if header.count(c) > 1})
        raise DataValidationError(
            f"The header repeats the column(s) {repeated}.",
            "Give every column its own name.",
            file=file,
            field=repeated[0],
        )
    if layout.time_column not in header:
        raise DataValidationError(
            f"There is no time column {layout.time_column!r}; the columns are "
            f"{header}.",
            "Name the time column 'time', or set time_column in the sidecar.",
            file=file,
            field=layout.time_column,
        )
    special = {layout.time_column, layout.subject_column, layout.sweep_column}
    variables = [c for c in header if c not in special]
    if not variables:
        raise DataValidationError(
            "The table has no variable column besides time, subject and sweep.",
            "Add a column for each measured variable.",
            file=file,
        )
    for mapping, what in ((layout.roles, "roles"), (layout.units, "units")):
        unknown = sorted(set(mapping) - set(header))
        if unknown:
            raise DataValidationError(
                f"The sidecar's {what} name column(s) {unknown} that the file does "
                f"not have; its columns are {header}.",
                "Correct the column names in the sidecar.",
                file=file,
                field=unknown[0],
            )
    return {
        "variables": variables,
        "subject": layout.subject_column if layout.subject_column in header else None,
        "sweep": layout.sweep_column if layout.sweep_column in header else None,
    }


def _numeric_column(frame, column, file, first_line) -> np.ndarray:
    """The column as floats; missing cells are NaN, any other text is an error."""
    cells = frame[column].astype(str).str.strip()
    missing = cells.isin(MISSING_CELLS)
    values = pd.to_numeric(cells.where(~missing, "nan"), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        index = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"Line {first_line + index} (data row {index}) has {cells.iloc[index]!r} "
            f"in column {column!r}, which is not a number.",
            "Correct the cell, or leave it empty to mark a missing value.",
            file=file,
            field=column,
        )
    return values.to_numpy(dtype=np.float64)


def _subject_tables(frame, numbers, columns, layout, path, first_line):
    file = str(path)
    time = numbers[layout.time_column]
    if np.isnan(time).any():
        index = int(np.flatnonzero(np.isnan(time))[0])
        raise DataValidationError(
            f"Line {first_line + index} (data row {index}) has no time.",
            "Give every row a time; a row without one cannot be placed.",
            file=file,
            field=layout.time_column,
        )
    if columns["subject"] is not None:
        subjects = frame[columns["subject"]].astype(str).str.strip().to_numpy()
        if (subjects == "").any():
            index = int(np.flatnonzero(subjects == "")[0])
            raise DataValidationError(
                f"Line {first_line + index} (data row {index}) has no subject.",
                "Name the subject of every row.",
                file=file,
                field=columns["subject"],
            )
    else:
        subjects = np.full(len(frame), layout.subject or path.stem)
    sweep = np.zeros(len(frame), dtype=np.int64)
    if columns["sweep"] is not None:
        sweep = _numeric_column(frame, columns["sweep"], file, first_line)
        if not np.all(np.isfinite(sweep) & (sweep == np.round(sweep))):
            raise DataValidationError(
                "The sweep column holds values that are not whole numbers.",
                "Number the sweeps 0, 1, 2, …",
                file=file,
                field=columns["sweep"],
            )
        sweep = sweep.astype(np.int64)

    tables = []
    for name in pd.unique(subjects):
        rows = np.flatnonzero(subjects == name)
        tables.append(
            SubjectTable(
                name=str(name),
                source_file=file,
                time=time[rows],
                sweep=sweep[rows],
                values={
                    layout.rename.get(c, c): numbers[c][rows]
                    for c in columns["variables"]
                },
                row=rows,
                t0=layout.t0,
            )
        )
    return tables
