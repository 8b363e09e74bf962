"""Load whole-cell current-clamp recordings into the bayesude data convention.

One loader for three file formats, chosen by the file's suffix: NetCDF files
(``.nc``) with ``voltage (sweep, time)`` in mV, ``command_current (sweep,
time)`` in pA and ``time`` in s; Axon ABF files (``.abf``, read by pyabf);
and NWB files (``.nwb``, read by pynwb). It returns one ``xarray.Dataset`` with
dimensions ``(subject, sweep, time)`` as described in ``docs/conventions.md``:
time in ms on the union of all subjects' sample times, NaN where a subject
recorded nothing, and the file, sweeps, channel and preprocessing written into
the dataset's attributes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesude.data import resample
from bayesude.data.abf import read_abf
from bayesude.data.nwb import read_nwb
from bayesude.data.sweeps import RawSweeps
from bayesude.errors import DataValidationError

__all__ = ["FORMATS", "load_current_clamp"]

# Variable name in the source file -> (name in the Dataset, required units).
_SOURCE_VARIABLES = {"voltage": ("voltage", "mV"), "command_current": ("current", "pA")}
_DESCRIPTION_KEYS = ("file", "sweeps", "window_ms", "channel")

#: File formats by suffix; ``format="auto"`` picks one from the suffix.
FORMATS = {".nc": "netcdf", ".abf": "abf", ".nwb": "nwb"}
_SECONDS_TO_MS = 1000.0

# Times are rounded to 1e-9 ms so that grids built from different window
# starts (e.g. 100 + k * 0.1 and 50 + k * 0.1) meet on identical floats.
_TIME_DECIMALS = 9
_GRID_TOLERANCE = resample.GRID_TOLERANCE


@dataclass(frozen=True)
class _SubjectRequest:
    """One subject's validated description, before its file is read."""

    name: str
    path: Path
    given_file: str
    sweeps: tuple[int, ...] | None
    window_ms: tuple[float, float] | None
    format: str
    channel: int | str | None


@dataclass(frozen=True)
class _Recording:
    """One file's full-rate samples for the selected sweeps."""

    time_ms: np.ndarray  # (time,)
    sampling_interval_ms: float
    voltage: np.ndarray  # (sweep, time), mV
    current: np.ndarray  # (sweep, time), pA
    sweep_numbers: np.ndarray  # (sweep,)
    channel: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class _Resampled:
    """One subject's samples on its new time grid, with what produced them."""

    window_ms: tuple[float, float]
    recording: _Recording
    time_ms: np.ndarray  # (time,)
    voltage: np.ndarray  # (sweep, time), mV
    current: np.ndarray  # (sweep, time), pA


def load_current_clamp(
    subjects: Mapping[str, Mapping[str, Any] | str | os.PathLike],
    *,
    window_ms: tuple[float, float] | None = None,
    downsample_ms: float = 1.0,
    base_dir: str | os.PathLike | None = None,
    format: str = "auto",
    errors: str = "raise",
) -> xr.Dataset:
    """Load current-clamp sweeps of several subjects into one Dataset.

    Parameters
    ----------
    subjects : mapping of str to mapping or path
        Subject name (e.g. ``"cell_18711001"``) to its description, a mapping
        with the keys

        ``file`` (str or path, required)
            A NetCDF file (``.nc``) with ``voltage (sweep, time)`` in mV,
            ``command_current (sweep, time)`` in pA and ``time`` in s; an
            Axon ABF file (``.abf``); or an NWB file (``.nwb``) whose
            ``CurrentClampSeries`` are the sweeps, each with its
            ``CurrentClampStimulusSeries``. Relative to `base_dir` when that
            is given.
        ``sweeps`` (sequence of int, optional)
            Positions of the sweeps in the file (0 = first), in the order
            wanted; all sweeps when absent or None.
        ``channel`` (int or str, optional)
            ABF: the ADC channel recording the membrane potential (default
            0). NWB: the name of the intracellular electrode (default: the
            only one). Not allowed for NetCDF.
        ``window_ms`` (pair of float, optional)
            ``(start_ms, end_ms)`` from sweep start, overriding the global
            `window_ms` for this subject.

        A bare path is shorthand for ``{"file": path}``.
    window_ms : pair of float, optional
        ``(start_ms, end_ms)``, in ms from sweep start, kept for every subject
        without its own window. Samples with ``start_ms <= t < end_ms`` are
        kept. The whole sweep when None.
    downsample_ms : float, default 1.0
        New sampling interval in ms, at least the recording's own interval.
        New samples lie at ``start_ms + k * downsample_ms``. Pass the
        recording's own interval (0.05 ms at 20 kHz) to keep every sample.
    base_dir : str or path, optional
        Folder that relative ``file`` entries are resolved against.
    format : {"auto", "netcdf", "abf", "nwb"}, default "auto"
        File format of every subject; "auto" picks it from each suffix.
    errors : {"raise", "collect"}, default "raise"
        What a subject whose file cannot be used does: raise its
        :class:`DataValidationError`, or leave the subject out and record the
        message in the attribute ``subject_errors`` (JSON, by subject) so a
        batch can report it and fit the others.

    Returns
    -------
    xarray.Dataset
        Dimensions ``(subject, sweep, time)``, with

        * ``time`` (time,) in ms, the sorted union of every subject's samples;
        * ``sweep`` (sweep,) = 0 .. n-1, the position in a subject's selection;
        * ``sweep_number`` (subject, sweep), coordinate: the sweep's index in
          its source file, -1 where a subject has fewer sweeps;
        * ``voltage`` (subject, sweep, time) in mV, ``role="observed"``;
        * ``current`` (subject, sweep, time) in pA, ``role="input"``;
        * ``source_file`` (subject,), the file as given in `subjects`.

        Values a subject did not record are NaN. JSON attributes record the
        provenance and preprocessing: ``window_ms``, ``sweeps`` and
        ``channels`` per subject, ``source_attributes`` (each file's own
        metadata), ``downsample_ms``, ``downsample_method`` and
        ``subject_errors``.

    Raises
    ------
    FileNotFoundError
        If a subject's file does not exist.
    DataValidationError
        (a ValueError) If a file cannot be read (corrupt ABF or NWB), lacks
        ``voltage`` or ``command_current`` or has other units, has no finite
        voltage, or has sweeps of different lengths.
    ValueError
        If a description is malformed, a sweep index is out of range, a window
        lies outside the recording, or `downsample_ms` is not a positive
        number at least as large as the sampling interval.

    Notes
    -----
    The voltage is low-pass filtered on the full sweep before the window is
    cut, so the filter's edge transients fall at the sweep ends and not at the
    window edges. The filter is an order-8 Butterworth at 80 % of the new
    Nyquist frequency, run forwards and backwards (zero phase). The command
    current is a noiseless, piecewise-constant command and is not filtered:
    each new sample takes the command in force at that time, so step edges
    stay one sample wide and every value is an exact command level.

    Examples
    --------
    >>> recordings = load_current_clamp(
    ...     {
    ...         "cell_18711001": {"file": "18711001.nc", "sweeps": [0, 1, 2]},
    ...         "cell_File_axon_5": {
    ...             "file": "File_axon_5.nc",
    ...             "window_ms": (100.0, 900.0),
    ...         },
    ...     },
    ...     window_ms=(0.0, 1500.0),
    ...     base_dir="data/current_clamp",
    ... )  # doctest: +SKIP
    >>> recordings["voltage"].dims  # doctest: +SKIP
    ('subject', 'sweep', 'time')
    """
    _check_downsample_ms(downsample_ms)
    if window_ms is not None:
        window_ms = _check_window_shape(window_ms, "The window_ms argument")
    if not subjects:
        raise ValueError(
            "subjects is empty; pass a mapping from subject name to a description "
            "such as {'cell_1': {'file': 'cell_1.nc'}}."
        )

    if errors not in ("raise", "collect"):
        raise ValueError(f"errors must be 'raise' or 'collect', got {errors!r}.")

    requests = [
        _parse_description(name, description, base_dir, format)
        for name, description in subjects.items()
    ]
    loaded, resampled, problems = [], [], {}
    for request in requests:
        try:
            recording = _read_recording(request)
        except DataValidationError as error:
            if errors == "raise":
                raise
            problems[request.name] = str(error)
            continue
        window = _resolve_window(request, window_ms, recording)
        loaded.append(request)
        resampled.append(_resample(request, recording, window, downsample_ms))
    if not loaded:
        raise DataValidationError(
            f"No subject could be loaded: {json.dumps(problems)}",
            "Fix the files named above.",
        )
    dataset = _assemble(loaded, resampled, downsample_ms)
    dataset.attrs["subject_errors"] = json.dumps(problems)
    return dataset


def _check_downsample_ms(downsample_ms: Any) -> None:
    """Raise unless `downsample_ms` is a finite positive real number."""
    is_number = isinstance(downsample_ms, int | float | np.integer | np.floating)
    if (
        isinstance(downsample_ms, bool)
        or not is_number
        or not math.isfinite(downsample_ms)
        or downsample_ms <= 0
    ):
        raise ValueError(
            f"downsample_ms must be a positive number of milliseconds, got "
            f"{downsample_ms!r}; pass e.g. downsample_ms=1.0."
        )


def _check_window_shape(window: Any, where: str) -> tuple[float, float]:
    """Return `window` as a pair of floats, or raise naming `where` it came from."""
    try:
        start_ms, end_ms = (float(edge) for edge in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where} must be a pair (start_ms, end_ms) of numbers, got "
            f"{window!r}; pass e.g. (0.0, 1500.0)."
        ) from None
    if not (math.isfinite(start_ms) and math.isfinite(end_ms) and start_ms < end_ms):
        raise ValueError(
            f"{where} must have finite start_ms < end_ms, got {window!r}; "
            "swap or correct the two edges."
        )
    return start_ms, end_ms


def _parse_description(
    name: Any, description: Any, base_dir: str | os.PathLike | None, format: str
) -> _SubjectRequest:
    """Validate one subject's description and resolve its file path."""
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"Subject names must be non-empty strings, got {name!r}; use a name "
            "such as 'cell_18711001'."
        )
    if isinstance(description, str | os.PathLike):
        description = {"file": description}
    if not isinstance(description, Mapping) or "file" not in description:
        raise ValueError(
            f"The description of subject {name!r} must be a path or a mapping "
            f"with a 'file' key, got {description!r}; pass e.g. "
            "{'file': '18711001.nc', 'sweeps': [0, 1]}."
        )
    unknown = sorted(set(description) - set(_DESCRIPTION_KEYS))
    if unknown:
        raise ValueError(
            f"The description of subject {name!r} has unknown keys {unknown}; "
            f"the allowed keys are {list(_DESCRIPTION_KEYS)}."
        )

    given_file = os.fspath(description["file"])
    path = Path(base_dir, given_file) if base_dir is not None else Path(given_file)
    window = description.get("window_ms")
    if window is not None:
        window = _check_window_shape(window, f"The window_ms of subject {name!r}")
    return _SubjectRequest(
        name=name,
        path=path,
        given_file=given_file,
        sweeps=_check_sweep_list(name, given_file, description.get("sweeps")),
        window_ms=window,
        format=_file_format(name, path, format),
        channel=description.get("channel"),
    )


def _file_format(name: str, path: Path, format: str) -> str:
    """The reader for `path`: `format`, or the one its suffix names."""
    if format != "auto":
        if format not in FORMATS.values():
            raise ValueError(
                f"format must be 'auto' or one of {sorted(FORMATS.values())}, got "
                f"{format!r}."
            )
        return format
    chosen = FORMATS.get(path.suffix.lower())
    if chosen is None:
        raise DataValidationError(
            f"The suffix {path.suffix!r} names no current-clamp format.",
            f"Use a file ending in {', '.join(FORMATS)}, or pass format= one of "
            f"{sorted(FORMATS.values())}.",
            file=path,
            subject=name,
            field="file",
        )
    return chosen


def _check_sweep_list(
    name: str, given_file: str, sweeps: Any
) -> tuple[int, ...] | None:
    """Return the sweep indices as a tuple of ints, or None for all sweeps."""
    if sweeps is None:
        return None
    # A scalar or a nested list becomes an empty tuple and is reported below.
    sweeps = tuple(sweeps) if np.ndim(sweeps) == 1 else ()
    integers = all(
        isinstance(index, int | np.integer) and not isinstance(index, bool)
        for index in sweeps
    )
    if not sweeps or not integers or len(set(sweeps)) != len(sweeps):
        raise ValueError(
            f"sweeps of subject {name!r} ({given_file}) must be a non-empty list "
            f"of distinct integer sweep indices, got {sweeps!r}; pass e.g. "
            "[0, 1, 2], or leave it out to use every sweep."
        )
    return tuple(int(index) for index in sweeps)


def _read_recording(request: _SubjectRequest) -> _Recording:
    """Read the selected sweeps of one subject's file at full rate."""
    if not request.path.is_file():
        raise FileNotFoundError(
            f"The file {str(request.path)!r} of subject {request.name!r} does not "
            "exist; check the 'file' entry of its description, or set base_dir "
            "to the folder that holds it."
        )
    readers = {"netcdf": _read_netcdf, "abf": read_abf, "nwb": read_nwb}
    raw = readers[request.format](request.path, request.name, request.channel)
    positions = _sweep_positions(request, raw.voltage_mv.shape[0])
    if not np.isfinite(raw.voltage_mv[positions]).any():
        raise DataValidationError(
            "The voltage of the selected sweeps has no finite sample (all NaN).",
            "Choose sweeps that recorded a voltage, or leave the subject out.",
            file=request.path,
            subject=request.name,
            field="voltage",
        )
    time_ms = raw.time_s * _SECONDS_TO_MS
    return _Recording(
        time_ms=time_ms,
        sampling_interval_ms=_sampling_interval_ms(request, time_ms),
        voltage=raw.voltage_mv[positions],
        current=raw.current_pa[positions],
        sweep_numbers=np.asarray(raw.sweep_numbers, dtype=np.int64)[positions],
        channel=raw.channel,
        attrs=raw.attrs,
    )


def _read_netcdf(path: Path, subject: str, channel: Any) -> RawSweeps:
    """Every sweep of a NetCDF current-clamp file (``channel`` must be None)."""
    if channel is not None:
        raise DataValidationError(
            "A NetCDF current-clamp file has one voltage and one current variable, "
            "so there is no channel to choose.",
            "Remove 'channel' from the subject's description.",
            file=path,
            subject=subject,
            field="channel",
        )
    try:
        source = xr.open_dataset(path)
    except (OSError, ValueError) as error:
        raise DataValidationError(
            f"xarray cannot open it as NetCDF ({type(error).__name__}: {error}).",
            "Check that the file is complete, or write it again with "
            "xarray.Dataset.to_netcdf.",
            file=path,
            subject=subject,
            field="file",
        ) from None
    with source:
        arrays = _check_variables(path, subject, source)
        return RawSweeps(
            time_s=_time_in_s(path, subject, source),
            voltage_mv=arrays["voltage"].values.astype(np.float64),
            current_pa=arrays["current"].values.astype(np.float64),
            sweep_numbers=np.asarray(source["sweep"].values, dtype=np.int64),
            channel="variables voltage (mV) and command_current (pA)",
            attrs=dict(source.attrs),
        )


def _check_variables(
    path: Path, subject: str, source: xr.Dataset
) -> dict[str, xr.DataArray]:
    """Return the file's voltage and current, checking names, dims and units."""
    arrays = {}
    for source_name, (name, units) in _SOURCE_VARIABLES.items():
        where = f"file {str(path)!r} of subject {subject!r}"
        if source_name not in source.data_vars:
            raise ValueError(
                f"The {where} has no variable {source_name!r} (it has "
                f"{sorted(source.data_vars)}); load_current_clamp needs "
                f"{source_name!r} with dims (sweep, time) in {units}, so convert "
                "the recording to that layout first."
            )
        variable = source[source_name]
        if variable.dims != ("sweep", "time"):
            raise ValueError(
                f"Variable {source_name!r} in the {where} has dims {variable.dims}; "
                "transpose or rename it to dims ('sweep', 'time')."
            )
        if variable.attrs.get("units") != units:
            raise ValueError(
                f"Variable {source_name!r} in the {where} has units "
                f"{variable.attrs.get('units')!r}; convert it to {units!r} and set "
                f"attrs['units'] = {units!r}."
            )
        arrays[name] = variable
    return arrays


def _time_in_s(path: Path, subject: str, source: xr.Dataset) -> np.ndarray:
    """Return the file's time coordinate in s; the file must give it in s."""
    units = source["time"].attrs.get("units")
    if units != "s":
        raise DataValidationError(
            f"The time coordinate has units {units!r}; load_current_clamp expects "
            "seconds.",
            "Convert it to seconds and set attrs['units'] = 's'.",
            file=path,
            subject=subject,
            field="time",
        )
    return np.asarray(source["time"].values, dtype=np.float64)


def _sampling_interval_ms(request: _SubjectRequest, time_ms: np.ndarray) -> float:
    """Return the uniform sampling interval in ms, or raise if it is not uniform."""
    steps = np.diff(time_ms)
    interval = float(np.median(steps)) if steps.size else math.nan
    if not steps.size or np.any(np.abs(steps - interval) > _GRID_TOLERANCE * interval):
        raise ValueError(
            f"The time coordinate of file {str(request.path)!r} (subject "
            f"{request.name!r}) is not uniformly sampled; load_current_clamp "
            "needs a uniform grid, so resample the file onto one first."
        )
    return interval


def _sweep_positions(request: _SubjectRequest, num_sweeps: int) -> list[int]:
    """Return the requested sweep positions, checking them against the file."""
    if request.sweeps is None:
        return list(range(num_sweeps))
    outside = [index for index in request.sweeps if not 0 <= index < num_sweeps]
    if outside:
        raise ValueError(
            f"Sweep(s) {outside} of subject {request.name!r} do not exist in file "
            f"{str(request.path)!r}, which has sweeps 0 to {num_sweeps - 1}; "
            "choose sweep indices in that range."
        )
    return list(request.sweeps)


def _resolve_window(
    request: _SubjectRequest,
    window_ms: tuple[float, float] | None,
    recording: _Recording,
) -> tuple[float, float]:
    """Return the subject's window in ms, checked against the recording."""
    first_ms = float(recording.time_ms[0])
    end_of_recording_ms = float(recording.time_ms[-1]) + recording.sampling_interval_ms
    last_ms = float(recording.time_ms[-1])
    window = request.window_ms or window_ms or (first_ms, end_of_recording_ms)
    start_ms, end_ms = window
    slack = _GRID_TOLERANCE * recording.sampling_interval_ms
    # The window must hold at least the sample at its start.
    start_outside = start_ms < first_ms - slack or start_ms > last_ms + slack
    if start_outside or end_ms > end_of_recording_ms + slack:
        raise ValueError(
            f"The window ({start_ms:g}, {end_ms:g}) ms of subject {request.name!r} "
            f"lies outside the recording in file {str(request.path)!r}, which "
            f"spans {first_ms:g} to {end_of_recording_ms:g} ms; pass a window "
            "within that range."
        )
    return window


def _resample(
    request: _SubjectRequest,
    recording: _Recording,
    window: tuple[float, float],
    downsample_ms: float,
) -> _Resampled:
    """Filter, then sample one subject's sweeps on its new time grid."""
    interval = recording.sampling_interval_ms
    if downsample_ms < interval * (1 - _GRID_TOLERANCE):
        raise ValueError(
            f"downsample_ms={downsample_ms:g} is smaller than the sampling "
            f"interval {interval:g} ms of file {str(request.path)!r} (subject "
            f"{request.name!r}); pass downsample_ms >= {interval:g}."
        )

    new_times = _new_sample_times(window, recording, downsample_ms)
    position = resample.sample_positions(new_times, recording.time_ms[0], interval)
    filtered = resample.lowpass(recording.voltage, interval, downsample_ms)
    voltage = resample.interpolate_samples(filtered, position)
    # The command holds its level until the next sample (zero-order hold).
    current = resample.hold_samples(recording.current, position)
    return _Resampled(
        window_ms=window,
        recording=recording,
        time_ms=np.round(new_times, _TIME_DECIMALS),
        voltage=voltage,
        current=current,
    )


def _new_sample_times(
    window: tuple[float, float], recording: _Recording, downsample_ms: float
) -> np.ndarray:
    """Return ``start + k * downsample_ms`` inside the window and the recording."""
    start_ms, end_ms = window
    # Round the ratios first so that a float ratio of 500.0000001 counts as 500.
    num_in_window = math.ceil(round((end_ms - start_ms) / downsample_ms, 6))
    num_in_recording = (
        math.floor(round((recording.time_ms[-1] - start_ms) / downsample_ms, 6)) + 1
    )
    num_samples = min(num_in_window, num_in_recording)
    return start_ms + downsample_ms * np.arange(num_samples)


def _assemble(
    requests: list[_SubjectRequest],
    resampled: list[_Resampled],
    downsample_ms: float,
) -> xr.Dataset:
    """Place every subject on the union time grid and attach provenance."""
    names = [request.name for request in requests]
    union_ms = np.unique(np.concatenate([subject.time_ms for subject in resampled]))
    num_sweeps = max(subject.voltage.shape[0] for subject in resampled)
    shape = (len(names), num_sweeps, union_ms.size)
    voltage = np.full(shape, np.nan)
    current = np.full(shape, np.nan)
    sweep_number = np.full((len(names), num_sweeps), -1, dtype=np.int64)

    for row, subject in enumerate(resampled):
        columns = np.searchsorted(union_ms, subject.time_ms)
        count = subject.voltage.shape[0]
        voltage[row][:count, columns] = subject.voltage
        current[row][:count, columns] = subject.current
        sweep_number[row, :count] = subject.recording.sweep_numbers

    dims = ("subject", "sweep", "time")
    return xr.Dataset(
        data_vars={
            "voltage": (dims, voltage, _VOLTAGE_ATTRS),
            "current": (dims, current, _CURRENT_ATTRS),
            "source_file": (("subject",), [r.given_file for r in requests]),
        },
        coords={
            "subject": names,
            "sweep": np.arange(num_sweeps),
            "time": ("time", union_ms, _TIME_ATTRS),
            "sweep_number": (("subject", "sweep"), sweep_number, _SWEEP_NUMBER_ATTRS),
        },
        attrs=_provenance(names, resampled, downsample_ms),
    )


_TIME_ATTRS = {"units": "ms", "long_name": "time from sweep start"}
_VOLTAGE_ATTRS = {
    "units": "mV",
    "role": "observed",
    "long_name": "membrane potential, anti-alias filtered and downsampled",
}
_CURRENT_ATTRS = {
    "units": "pA",
    "role": "input",
    "long_name": "injected current command, sampled without filtering",
}
_SWEEP_NUMBER_ATTRS = {
    "long_name": "index of the sweep in its source file; -1 where the subject has "
    "fewer sweeps",
}


def _provenance(
    names: list[str], resampled: list[_Resampled], downsample_ms: float
) -> dict[str, Any]:
    """Return the dataset attributes describing where the data came from."""
    by_name = dict(zip(names, resampled, strict=True))
    return {
        "window_ms": json.dumps({n: list(s.window_ms) for n, s in by_name.items()}),
        "sweeps": json.dumps(
            {n: s.recording.sweep_numbers.tolist() for n, s in by_name.items()}
        ),
        "channels": json.dumps({n: s.recording.channel for n, s in by_name.items()}),
        "downsample_ms": float(downsample_ms),
        "downsample_method": resample.DOWNSAMPLE_METHOD,
        "source_attributes": json.dumps(
            {n: s.recording.attrs for n, s in by_name.items()}, default=_json_scalar
        ),
    }


def _json_scalar(value: Any) -> Any:
    """Convert NumPy scalars and arrays found in file attributes for JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store attribute value {value!r} as JSON.")
