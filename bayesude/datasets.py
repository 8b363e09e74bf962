"""Load recordings already stored in the data convention (one NetCDF per subject).

Each file holds data variables with dimensions ``(sweep, time)`` (or
``(time,)``, read as one sweep), each with ``units`` and ``role`` attributes,
and a ``time`` coordinate with ``units``, as described in
``docs/conventions.md``. Synthetic recordings and converted benchmark series
are shipped this way.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["load_datasets"]


def load_datasets(subjects: Mapping[str, Mapping[str, Any]]) -> xr.Dataset:
    """Read one convention file per subject into one ``(subject, sweep, time)`` Dataset.

    Parameters
    ----------
    subjects
        ``{subject: {"file": path, "sweeps": [positions] (optional),
        "window_ms": (start, end) (optional, in the file's time units)}}``.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file lacks a time coordinate or its variables lack units or role.
    """
    datasets = []
    for subject, description in subjects.items():
        path = pathlib.Path(description["file"])
        if not path.exists():
            raise FileNotFoundError(f"Subject {subject!r}: no file at {path}.")
        with xr.open_dataset(path) as opened:
            data = opened.load()
        _check_convention(data, subject, path)
        if "sweep" not in data.dims:
            data = data.expand_dims(sweep=[0])
        if description.get("sweeps") is not None:
            data = data.isel(sweep=list(description["sweeps"]))
        if description.get("window_ms") is not None:
            start, end = description["window_ms"]
            times = data["time"].values
            data = data.sel(time=(times >= start) & (times <= end))
        datasets.append(data.expand_dims(subject=[subject]))
    combined = xr.concat(datasets, dim="subject", join="outer")
    combined["source_file"] = ("subject", [str(s["file"]) for s in subjects.values()])
    return combined


def _check_convention(data: xr.Dataset, subject: str, path: pathlib.Path) -> None:
    if "time" not in data.coords or "units" not in data["time"].attrs:
        raise ValueError(
            f"Subject {subject!r}: {path} needs a 'time' coordinate with a 'units' "
            f"attribute (see docs/conventions.md)."
        )
    for name, variable in data.data_vars.items():
        if np.issubdtype(variable.dtype, np.number) and not {"units", "role"} <= set(
            variable.attrs
        ):
            raise ValueError(
                f"Subject {subject!r}: variable {name!r} in {path} needs 'units' and "
                f"'role' attributes (role 'observed' or 'input')."
            )
