"""Neurodata Without Borders (NWB) current-clamp files, read by pynwb."""

from __future__ import annotations

import pathlib

import numpy as np

from bayesude.data.sweeps import RawSweeps
from bayesude.errors import DataValidationError

# NWB stores icephys series in SI units: CurrentClampSeries in volts and
# CurrentClampStimulusSeries in amperes (after conversion and offset).
_VOLT_TO_MILLIVOLT = 1e3
_AMPERE_TO_PICOAMPERE = 1e12


def read_nwb(path: pathlib.Path, subject: str, channel: str | None) -> RawSweeps:
    """Read every current-clamp sweep of an NWB file, with its stimulus.

    Each ``CurrentClampSeries`` in ``acquisition`` is one sweep; its current is
    the ``CurrentClampStimulusSeries`` in ``stimulus`` with the same
    ``sweep_number`` (or, without sweep numbers, in the same position). Data
    are scaled by each series' ``conversion`` and ``offset`` and converted
    from its ``unit`` (volts, amperes) to mV and pA.

    Parameters
    ----------
    path
        The ``.nwb`` file (HDF5).
    subject
        Subject name, for error messages.
    channel
        Name of the intracellular electrode to read; every electrode when None
        (the file must then hold one).

    Raises
    ------
    DataValidationError
        If pynwb cannot read the file, it has no current-clamp series or no
        matching stimulus, or sweeps differ in length or sampling rate.
    """
    from pynwb import NWBHDF5IO
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    file = str(path)
    where = {"file": file, "subject": subject}
    try:
        io = NWBHDF5IO(file, mode="r")
        nwbfile = io.read()
    except Exception as error:  # noqa: BLE001  (h5py and hdmf raise many kinds)
        raise DataValidationError(
            f"pynwb cannot read it as an NWB file ({type(error).__name__}: {error}).",
            "Check that the file is a complete NWB 2 (HDF5) file, e.g. with "
            "nwbinspector, or export it again from the acquisition software.",
            field="file",
            **where,
        ) from None
    with io:
        responses = _series_of(nwbfile.acquisition, CurrentClampSeries, channel)
        stimuli = _series_of(nwbfile.stimulus, CurrentClampStimulusSeries, channel)
        if not responses:
            raise DataValidationError(
                "The file has no CurrentClampSeries in its acquisition group"
                + (f" for electrode {channel!r}." if channel else "."),
                "Store each sweep's membrane potential as a CurrentClampSeries, or "
                "set 'channel' to the name of the electrode that recorded it.",
                field="acquisition",
                **where,
            )
        pairs = _pair_with_stimuli(responses, stimuli, where)
        electrodes = sorted({series.electrode.name for series in responses})
        time_s, voltage, current = _sweep_arrays(pairs, where)
        return RawSweeps(
            time_s=time_s,
            voltage_mv=voltage * _VOLT_TO_MILLIVOLT,
            current_pa=current * _AMPERE_TO_PICOAMPERE,
            sweep_numbers=np.array(
                [_sweep_number(r, i) for i, (r, _) in enumerate(pairs)]
            ),
            channel=(
                f"electrode {', '.join(electrodes)}: acquisition "
                f"{', '.join(r.name for r, _ in pairs)}; stimulus "
                f"{', '.join(s.name for _, s in pairs)}"
            ),
            attrs={
                "identifier": nwbfile.identifier,
                "session_description": nwbfile.session_description,
                "session_start_time": nwbfile.session_start_time.isoformat(),
            },
        )


def _series_of(group, kind, channel) -> list:
    series = [s for s in group.values() if isinstance(s, kind)]
    if channel is not None:
        series = [s for s in series if s.electrode.name == channel]
    return sorted(series, key=lambda s: (_sweep_number(s, 0), s.name))


def _sweep_number(series, default: int) -> int:
    number = getattr(series, "sweep_number", None)
    return default if number is None else int(number)


def _pair_with_stimuli(responses, stimuli, where) -> list:
    by_number = {s.sweep_number: s for s in stimuli if s.sweep_number is not None}
    pairs = []
    for position, response in enumerate(responses):
        stimulus = by_number.get(response.sweep_number)
        if (
            stimulus is None
            and response.sweep_number is None
            and position < len(stimuli)
        ):
            stimulus = stimuli[position]
        if stimulus is None:
            raise DataValidationError(
                f"The CurrentClampSeries {response.name!r} (sweep_number "
                f"{response.sweep_number}) has no CurrentClampStimulusSeries with "
                "the same sweep_number in the stimulus group.",
                "Add the injected current of that sweep as a "
                "CurrentClampStimulusSeries with the same sweep_number.",
                field="stimulus",
                **where,
            )
        pairs.append((response, stimulus))
    return pairs


def _sweep_arrays(pairs, where) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times in s and SI-unit values ``(sweep, time)`` of the paired series."""
    voltage, current, times = [], [], None
    for response, stimulus in pairs:
        v, c = _scaled(response), _scaled(stimulus)
        t = _times(response, v.size)
        if c.size != v.size or (times is not None and t.size != times.size):
            raise DataValidationError(
                f"Series {response.name!r} has {v.size} samples, its stimulus "
                f"{stimulus.name!r} has {c.size}, and the first sweep has "
                f"{v.size if times is None else times.size}; the lengths must match.",
                "Store every sweep and its stimulus with the same number of "
                "samples, or load the sweeps as separate subjects.",
                field=response.name,
                **where,
            )
        if times is not None and not np.allclose(t, times, rtol=1e-9, atol=1e-12):
            raise DataValidationError(
                f"Series {response.name!r} is sampled at different times from the "
                "first sweep.",
                "Resample the sweeps onto one grid, or load them as separate subjects.",
                field=response.name,
                **where,
            )
        times = t
        voltage.append(v)
        current.append(c)
    return times, np.stack(voltage), np.stack(current)


def _scaled(series) -> np.ndarray:
    offset = getattr(series, "offset", 0.0) or 0.0
    return np.asarray(series.data[:], dtype=np.float64) * series.conversion + offset


def _times(series, num_samples: int) -> np.ndarray:
    """Sample times in s from the series start (timestamps or rate)."""
    if series.timestamps is not None:
        stamps = np.asarray(series.timestamps[:], dtype=np.float64)
        return stamps - stamps[0]
    return np.arange(num_samples) / float(series.rate)
