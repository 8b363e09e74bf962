"""Every loader, round trip: shipped or generated files into the data convention."""

import datetime
import json
import pathlib
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesude.data import (
    load_csv,
    load_current_clamp,
    load_dataset,
    load_files,
    select_subject,
)

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
ABF_FILE = DATA / "current_clamp" / "abf" / "File_axon_5.abf"
NETCDF_FILE = DATA / "current_clamp" / "File_axon_5.nc"
HARE_LYNX = DATA / "benchmarks" / "hudson_bay_lynx_hare_1900_1920.csv"
POPULATION = DATA / "population" / "rodent_hippocampus_population_rate_50ms.csv"


def assert_follows_convention(dataset, observed, inputs=()):
    """Dims, units and roles as docs/conventions.md states them."""
    assert tuple(dataset.dims) == ("subject", "sweep", "time")
    assert dataset["time"].attrs["units"]
    assert np.all(np.diff(dataset["time"].values) >= 0)
    for name in observed:
        assert dataset[name].dims == ("subject", "sweep", "time")
        assert dataset[name].attrs["role"] == "observed"
        assert dataset[name].attrs["units"]
    for name in inputs:
        assert dataset[name].attrs["role"] == "input"


def test_abf_file_loads_the_same_samples_as_its_netcdf_conversion():
    both = load_current_clamp(
        {
            "abf": {"file": ABF_FILE, "sweeps": [0, 3]},
            "netcdf": {"file": NETCDF_FILE, "sweeps": [0, 3]},
        },
        window_ms=(100.0, 900.0),
        downsample_ms=2.0,
    )
    assert_follows_convention(both, ["voltage"], ["current"])
    # The NetCDF stores the ABF's int16 codes with a float32 scale factor.
    np.testing.assert_allclose(
        both["voltage"].sel(subject="abf"),
        both["voltage"].sel(subject="netcdf"),
        atol=1e-4,
    )
    np.testing.assert_array_equal(
        both["current"].sel(subject="abf"), both["current"].sel(subject="netcdf")
    )
    channels = json.loads(both.attrs["channels"])
    assert channels["abf"].startswith("voltage: ADC 0 '_Ipatch' (mV)")
    assert json.loads(both.attrs["sweeps"])["abf"] == [0, 3]
    assert json.loads(both.attrs["source_attributes"])["abf"]["abf_id"] == "File_axon_5"
    assert both.attrs["downsample_ms"] == 2.0


def write_nwb(path, sweeps_volts, stimuli_amperes, rate_hz=10_000.0):
    """A small NWB file: one CurrentClampSeries and its stimulus per sweep."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwbfile = NWBFile(
        session_description="synthetic current clamp",
        identifier="bayesude-test",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    device = nwbfile.create_device(name="amplifier")
    electrode = nwbfile.create_icephys_electrode(
        name="electrode_0", description="patch pipette", device=device
    )
    for number, (voltage, current) in enumerate(
        zip(sweeps_volts, stimuli_amperes, strict=True)
    ):
        nwbfile.add_stimulus(
            CurrentClampStimulusSeries(
                name=f"stimulus_{number}",
                data=current,
                electrode=electrode,
                rate=rate_hz,
                gain=1.0,
                sweep_number=np.uint32(number),
            )
        )
        nwbfile.add_acquisition(
            CurrentClampSeries(
                name=f"response_{number}",
                data=voltage,
                electrode=electrode,
                rate=rate_hz,
                gain=1.0,
                sweep_number=np.uint32(number),
            )
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def test_nwb_current_clamp_series_and_their_stimulus_load_in_mv_and_pa(tmp_path):
    time_s = np.arange(2000) / 10_000.0
    steps = [-50e-12, 100e-12]
    current = [np.where((time_s >= 0.05) & (time_s < 0.15), a, 0.0) for a in steps]
    voltage = [-0.065 + 1e8 * c * (1 - np.exp(-time_s / 0.02)) for c in current]
    path = write_nwb(tmp_path / "cell.nwb", voltage, current)

    loaded = load_current_clamp({"cell": path}, downsample_ms=0.1)
    assert_follows_convention(loaded, ["voltage"], ["current"])
    np.testing.assert_allclose(
        loaded["voltage"].sel(subject="cell").values,
        1e3 * np.stack(voltage),
        atol=1e-9,
    )
    assert set(np.unique(loaded["current"].values)) == {-50.0, 0.0, 100.0}
    np.testing.assert_allclose(loaded["time"].values, 1e3 * time_s, atol=1e-9)
    assert loaded["sweep_number"].values.tolist() == [[0, 1]]
    channels = json.loads(loaded.attrs["channels"])["cell"]
    assert "electrode_0" in channels and "stimulus_1" in channels
    assert json.loads(loaded.attrs["source_attributes"])["cell"]["identifier"] == (
        "bayesude-test"
    )


def write_csv(path, text):
    path.write_text(text)
    return path


RAGGED_CSV = """subject,time,voltage,current
units,ms,mV,pA
fast,0.0,-65.0,0
fast,0.5,-64.0,10
fast,1.0,-63.5,10
fast,1.5,,10
fast,2.0,-63.0,0
slow,0.0,-70.0,0
slow,1.0,-69.0,20
"""


def test_csv_with_units_row_holds_ragged_subjects_padded_with_nan(tmp_path):
    path = write_csv(tmp_path / "cells.csv", RAGGED_CSV)
    sidecar = write_csv(tmp_path / "cells.yaml", "roles: {current: input}\n")
    loaded = load_csv(path)

    assert_follows_convention(loaded, ["voltage"], ["current"])
    assert loaded.attrs["sidecar"] == str(sidecar)
    assert loaded["voltage"].attrs["units"] == "mV"
    assert loaded["time"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    slow = loaded["voltage"].sel(subject="slow", sweep=0).values
    np.testing.assert_array_equal(np.isnan(slow), [False, True, False, True, True])
    assert loaded["row"].sel(subject="slow", sweep=0).values.tolist() == [
        5,
        -1,
        6,
        -1,
        -1,
    ]
    # A missing cell is a missing observation, never a zero.
    assert np.isnan(loaded["voltage"].sel(subject="fast", sweep=0, time=1.5))

    fast = select_subject(loaded, "fast")
    assert fast.sizes["time"] == 4


def test_shipped_hare_lynx_csv_loads_with_its_sidecar():
    loaded = load_csv(HARE_LYNX)
    raw = pd.read_csv(HARE_LYNX)

    assert_follows_convention(loaded, ["hare", "lynx"])
    assert loaded["subject"].values.tolist() == ["hudson_bay"]
    assert loaded["time"].attrs["units"] == "year"
    np.testing.assert_array_equal(loaded["time"].values, raw["year"])
    np.testing.assert_array_equal(
        loaded["hare"].values.ravel(), raw["hare_thousands"].to_numpy()
    )
    assert loaded["lynx"].attrs["source_column"] == "lynx_thousands"
    assert "stan-dev" in loaded.attrs["source"]


def test_csv_preprocessing_converts_crops_downsamples_and_is_recorded():
    loaded = load_csv(
        POPULATION,
        convert_units={"time": "ms", "rate": "kHz"},
        window=(0.0, 5000.0),
        downsample=100.0,
    )
    raw = pd.read_csv(POPULATION, nrows=100)

    assert loaded["time"].attrs["units"] == "ms"
    assert loaded["rate"].attrs["units"] == "kHz"
    np.testing.assert_allclose(loaded["time"].values, 25.0 + 100.0 * np.arange(50))
    # Anti-aliased downsampling keeps the mean rate of the window.
    assert loaded["rate"].mean().item() == pytest.approx(
        raw["population_rate_hz"].mean() / 1e3, rel=0.02
    )
    assert json.loads(loaded.attrs["convert_units"]) == {"time": "ms", "rate": "kHz"}
    assert json.loads(loaded.attrs["window"]) == [0.0, 5000.0]
    assert loaded.attrs["downsample"] == 100.0


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_netcdf_and_zarr_stores_round_trip_a_loaded_dataset(tmp_path, suffix):
    write_csv(tmp_path / "cells.yaml", "roles: {current: input}\nt0: 0.0\n")
    original = load_csv(write_csv(tmp_path / "cells.csv", RAGGED_CSV))
    store = tmp_path / f"cells{suffix}"
    if suffix == ".zarr":
        original.to_zarr(store)
    else:
        original.to_netcdf(store)

    reloaded = load_dataset(store)
    assert_follows_convention(reloaded, ["voltage"], ["current"])
    for name in ("voltage", "current", "row", "t0", "time", "sweep_number"):
        xr.testing.assert_identical(
            reloaded[name].reset_coords(drop=True),
            original[name].reset_coords(drop=True),
        )
    assert reloaded["subject"].values.tolist() == ["fast", "slow"]


def test_store_without_subject_dimension_is_one_subject_named_after_it(tmp_path):
    store = tmp_path / "trace.nc"
    xr.Dataset(
        {"rate": ("time", [1.0, 2.0, 3.0], {"units": "Hz", "role": "observed"})},
        coords={"time": ("time", [0.0, 0.1, 0.2], {"units": "s"})},
    ).to_netcdf(store)
    loaded = load_dataset(store, convert_units={"time": "ms"})
    assert loaded["subject"].values.tolist() == ["trace"]
    np.testing.assert_allclose(loaded["time"].values, [0.0, 100.0, 200.0])


def test_folder_of_csv_files_gives_one_subject_per_file(tmp_path):
    for name, offset in (("cell_a", 0.0), ("cell_b", 5.0)):
        write_csv(
            tmp_path / f"{name}.csv",
            f"time,voltage\nms,mV\n0,{-65 + offset}\n1,{-64 + offset}\n",
        )
    loaded = load_files(tmp_path)
    assert loaded["subject"].values.tolist() == ["cell_a", "cell_b"]
    assert loaded["voltage"].sel(subject="cell_b").values.ravel().tolist() == [
        -60.0,
        -59.0,
    ]
    assert json.loads(loaded.attrs["source_files"]) == [
        str(tmp_path / "cell_a.csv"),
        str(tmp_path / "cell_b.csv"),
    ]


def test_glob_of_abf_files_gives_one_subject_per_file(tmp_path):
    for name in ("cell_1", "cell_2"):
        shutil.copy(ABF_FILE, tmp_path / f"{name}.abf")
    loaded = load_files(tmp_path / "*.abf", window_ms=(100, 300), downsample_ms=1.0)
    assert loaded["subject"].values.tolist() == ["cell_1", "cell_2"]
    assert loaded.sizes["sweep"] == 9
    np.testing.assert_array_equal(
        loaded["voltage"].sel(subject="cell_1"), loaded["voltage"].sel(subject="cell_2")
    )


WORKFLOWS = pathlib.Path(__file__).resolve().parents[1] / "workflows"


@pytest.mark.parametrize(
    ("name", "variables", "num_times"),
    [("hare_lynx", ["hare", "lynx"], 21), ("population_rate", ["rate"], 20)],
)
def test_shipped_workflows_load_their_data_with_the_chosen_loader(
    name, variables, num_times
):
    from bayesude.workflow import load_workflow

    data = load_workflow(WORKFLOWS / f"{name}.yaml").load_data()
    assert_follows_convention(data, variables)
    assert data.sizes["time"] == num_times
    assert json.loads(data.attrs["subject_errors"]) == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hare_lynx", "population_rate"])
def test_shipped_workflows_run_through_the_command_line_at_tiny_size(tmp_path, name):
    import yaml
    from click.testing import CliRunner

    from bayesude.cli import main

    settings = yaml.safe_load((WORKFLOWS / f"{name}.yaml").read_text())
    settings["data"]["files"] = str(WORKFLOWS / settings["data"]["files"])
    settings["inference"].update(num_warmup=20, num_samples=20, svi_steps=50)
    settings["execution"] = {"workers": 0}
    workflow = tmp_path / f"{name}.yaml"
    workflow.write_text(yaml.safe_dump(settings))

    result = CliRunner().invoke(
        main, ["run", str(workflow), "--output", str(tmp_path / "out"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out" / "fits").glob("*.nc"))) == 1
    assert (tmp_path / "out" / "report.html").exists()
