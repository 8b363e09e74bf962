"""Load whole-cell current-clamp recordings into the bayesude data convention.

The loader reads NetCDF files with ``voltage (sweep, time)`` in mV and
``command_current (sweep, time)`` in pA, ``time`` in seconds, and returns one
``xarray.Dataset`` with dimensions ``(subject, sweep, time)`` as described in
``docs/conventions.md``: time in ms on the union of all subjects' sample
times, NaN where a subject recorded nothing, and the preprocessing written into
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
from scipy import signal

__all__ = ["load_current_clamp", "select_subject"]

# Variable name in the source file -> (name in the Dataset, required units).
_SOURCE_VARIABLES = {"voltage": ("voltage", "mV"), "command_current": ("current", "pA")}
_DESCRIPTION_KEYS = ("file", "sweeps", "window_ms")
_SECONDS_TO_MS = 1000.0

# Butterworth low-pass applied forwards and backwards (zero phase), with its
# cut-off at 80 % of the new Nyquist frequency, the same margin as
# scipy.signal.decimate's default filter.
_FILTER_ORDER = 8
_CUTOFF_FRACTION_OF_NYQUIST = 0.8
# Extend each sweep end by this many new sample intervals (odd reflection), so
# the filter's start-up transient is spent outside the recorded samples.
_PAD_NEW_INTERVALS = 10

# Times are rounded to 1e-9 ms so that grids built from different window
# starts (e.g. 100 + k * 0.1 and 50 + k * 0.1) meet on identical floats.
_TIME_DECIMALS = 9
# Relative tolerance when asking whether a time falls on a sample.
_GRID_TOLERANCE = 1e-6


@dataclass(frozen=True)
class _SubjectRequest:
    """One subject's validated description, before its file is read."""

    name: str
    path: Path
    given_file: str
    sweeps: tuple[int, ...] | None
    window_ms: tuple[float, float] | None


@dataclass(frozen=True)
class _Recording:
    """One file's full-rate samples for the selected sweeps."""

    time_ms: np.ndarray  # (time,)
    sampling_interval_ms: float
    voltage: np.ndarray  # (sweep, time), mV
    current: np.ndarray  # (sweep, time), pA
    sweep_numbers: np.ndarray  # (sweep,)
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
) -> xr.Dataset:
    """Load current-clamp sweeps of several subjects into one Dataset.

    Parameters
    ----------
    subjects : mapping of str to mapping or path
        Subject name (e.g. ``"cell_18711001"``) to its description, a mapping
        with the keys

        ``file`` (str or path, required)
            NetCDF file with ``voltage (sweep, time)`` in mV,
            ``command_current (sweep, time)`` in pA and ``time`` in s;
            relative to `base_dir` when that is given.
        ``sweeps`` (sequence of int, optional)
            Positions along the file's ``sweep`` dimension, in the order
            wanted; all sweeps when absent or None.
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
        preprocessing: ``window_ms`` and ``sweeps`` per subject,
        ``source_attributes`` (each file's global attributes), plus
        ``downsample_ms`` and ``downsample_method``.

    Raises
    ------
    FileNotFoundError
        If a subject's file does not exist.
    ValueError
        If a description is malformed, a file lacks ``voltage`` or
        ``command_current`` or has other units, a sweep index is out of range,
        a window lies outside the recording, or `downsample_ms` is not a
        positive number at least as large as the sampling interval.

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

    requests = [
        _parse_description(name, description, base_dir)
        for name, description in subjects.items()
    ]
    resampled = []
    for request in requests:
        recording = _read_recording(request)
        window = _resolve_window(request, window_ms, recording)
        resampled.append(_resample(request, recording, window, downsample_ms))
    return _assemble(requests, resampled, downsample_ms)


def select_subject(dataset: xr.Dataset, subject: str) -> xr.Dataset:
    """Return one subject's data, trimmed to the samples it recorded.

    Parameters
    ----------
    dataset : xarray.Dataset
        Recordings with dimensions ``(subject, sweep, time)``, e.g. from
        `load_current_clamp`.
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
    observed = [
        name
        for name, variable in dataset.data_vars.items()
        if variable.attrs.get("role") == "observed"
    ]
    if not observed:
        raise ValueError(
            "The dataset has no data variable with role='observed', so there is "
            "nothing to decide which samples subject "
            f"{subject!r} recorded; set attrs['role'] = 'observed' on the "
            "measured variables."
        )

    one = dataset.sel(subject=subject)
    finite = np.isfinite(one[observed[0]])
    for name in observed[1:]:
        finite = finite | np.isfinite(one[name])
    return one.isel(time=finite.any("sweep").values, sweep=finite.any("time").values)


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
    name: Any, description: Any, base_dir: str | os.PathLike | None
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
    )


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
    with xr.open_dataset(request.path) as source:
        arrays = _check_variables(request, source)
        time_ms = _time_in_ms(request, source)
        positions = _sweep_positions(request, source.sizes["sweep"])
        return _Recording(
            time_ms=time_ms,
            sampling_interval_ms=_sampling_interval_ms(request, time_ms),
            voltage=arrays["voltage"].isel(sweep=positions).values.astype(np.float64),
            current=arrays["current"].isel(sweep=positions).values.astype(np.float64),
            sweep_numbers=np.asarray(source["sweep"].values[positions], dtype=np.int64),
            attrs=dict(source.attrs),
        )


def _check_variables(
    request: _SubjectRequest, source: xr.Dataset
) -> dict[str, xr.DataArray]:
    """Return the file's voltage and current, checking names, dims and units."""
    arrays = {}
    for source_name, (name, units) in _SOURCE_VARIABLES.items():
        where = f"file {str(request.path)!r} of subject {request.name!r}"
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


def _time_in_ms(request: _SubjectRequest, source: xr.Dataset) -> np.ndarray:
    """Return the file's time coordinate in ms; the file must give it in s."""
    units = source["time"].attrs.get("units")
    if units != "s":
        raise ValueError(
            f"The time coordinate of file {str(request.path)!r} (subject "
            f"{request.name!r}) has units {units!r}; load_current_clamp expects "
            "seconds, so convert it and set attrs['units'] = 's'."
        )
    return np.asarray(source["time"].values, dtype=np.float64) * _SECONDS_TO_MS


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
    # Fractional position of each new time on the original sample grid.
    position = (new_times - recording.time_ms[0]) / interval
    nearest = np.round(position)
    position = np.where(np.abs(position - nearest) < _GRID_TOLERANCE, nearest, position)

    filtered = _lowpass(recording.voltage, interval, downsample_ms)
    voltage = _interpolate_samples(filtered, position)
    # The command holds its level until the next sample (zero-order hold).
    current = recording.current[:, np.floor(position).astype(np.int64)]
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


def _lowpass(
    voltage: np.ndarray, interval_ms: float, downsample_ms: float
) -> np.ndarray:
    """Zero-phase anti-alias filter of full-rate sweeps (sweep, time), in mV."""
    ratio = downsample_ms / interval_ms
    if ratio <= 1 + _GRID_TOLERANCE:
        return voltage
    cutoff = _CUTOFF_FRACTION_OF_NYQUIST / ratio  # fraction of the old Nyquist
    sos = signal.butter(_FILTER_ORDER, cutoff, output="sos")
    padlen = min(voltage.shape[-1] - 1, _PAD_NEW_INTERVALS * math.ceil(ratio))
    return signal.sosfiltfilt(sos, voltage, axis=-1, padlen=padlen)


def _interpolate_samples(trace: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Linearly interpolate (sweep, time) traces at fractional sample positions."""
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, trace.shape[-1] - 1)
    fraction = position - below
    return trace[:, below] * (1 - fraction) + trace[:, above] * fraction


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
        "downsample_ms": float(downsample_ms),
        "downsample_method": (
            "voltage: order-8 Butterworth low-pass at 0.8 x the new Nyquist "
            "frequency, zero phase (scipy.signal.sosfiltfilt) on the full sweep, "
            "then sampled at window start + k * downsample_ms; current: command "
            "value in force at each new sample time, unfiltered"
        ),
        "source_attributes": json.dumps(
            {n: s.recording.attrs for n, s in by_name.items()}, default=_json_scalar
        ),
    }


def _json_scalar(value: Any) -> Any:
    """Convert NumPy scalars and arrays found in file attributes for JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store attribute value {value!r} as JSON.")
