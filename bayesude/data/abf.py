"""Axon Binary Format (ABF) current-clamp files, read by pyabf."""

from __future__ import annotations

import pathlib

import numpy as np

from bayesude.data.sweeps import RawSweeps, scale_to
from bayesude.errors import DataValidationError


def read_abf(path: pathlib.Path, subject: str, channel: int | None) -> RawSweeps:
    """Read every sweep of a current-clamp ABF file.

    Parameters
    ----------
    path
        The ``.abf`` file (ABF1 or ABF2).
    subject
        Subject name, for error messages.
    channel
        ADC channel that records the membrane potential; 0 when None. The
        current is the command waveform of the same channel, which pyabf
        rebuilds from the protocol's epoch table (``sweepC``).

    Raises
    ------
    DataValidationError
        If pyabf cannot read the file (corrupt or not an ABF file), the channel
        does not exist, or the channel does not record a voltage.
    """
    import pyabf

    file = str(path)
    try:
        abf = pyabf.ABF(file)
    except Exception as error:  # noqa: BLE001  (pyabf raises many kinds)
        raise DataValidationError(
            f"pyabf cannot read it as an Axon ABF file ({type(error).__name__}: "
            f"{error}).",
            "Check that the file is a complete ABF recording (copy it again from "
            "the acquisition computer), or convert it to NWB or NetCDF.",
            file=file,
            subject=subject,
            field="file",
        ) from None

    channel = 0 if channel is None else int(channel)
    if not 0 <= channel < abf.channelCount:
        raise DataValidationError(
            f"Channel {channel} does not exist; the file has channels 0 to "
            f"{abf.channelCount - 1} ({', '.join(abf.adcNames)}).",
            "Set 'channel' to the ADC channel that records the membrane potential.",
            file=file,
            subject=subject,
            field="channel",
        )
    voltage, current = [], []
    for sweep in range(abf.sweepCount):
        abf.setSweep(sweep, channel=channel)
        voltage.append(np.array(abf.sweepY, dtype=np.float64))
        current.append(np.array(abf.sweepC, dtype=np.float64))
    abf.setSweep(0, channel=channel)
    fix = (
        "Pick the channel of a current-clamp recording (voltage recorded, "
        "current injected)."
    )
    where = {"file": file, "subject": subject, "fix": fix}
    return RawSweeps(
        time_s=np.array(abf.sweepX, dtype=np.float64),
        voltage_mv=scale_to(
            np.stack(voltage), abf.sweepUnitsY, "mV", field="recorded channel", **where
        ),
        current_pa=scale_to(
            np.stack(current), abf.sweepUnitsC, "pA", field="command channel", **where
        ),
        sweep_numbers=np.arange(abf.sweepCount),
        channel=(
            f"voltage: ADC {channel} {abf.adcNames[channel]!r} ({abf.sweepUnitsY}); "
            f"current: command waveform of that channel ({abf.sweepUnitsC})"
        ),
        attrs={
            "abf_id": abf.abfID,
            "abf_version": abf.abfVersionString,
            "protocol": abf.protocol,
            "recording_date": abf.abfDateTime.isoformat(),
            "sampling_rate_hz": float(abf.sampleRate),
        },
    )
