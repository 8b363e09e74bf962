"""Tests for bayesude.data: the current-clamp loader and subject selection."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bayesude.data import load_current_clamp, select_subject

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "current_clamp"
FICURVE_STEP_MS = (823.4, 1323.4)


@pytest.fixture(scope="module")
def two_cells() -> xr.Dataset:
    """18711001 (three sweeps, whole sweep) and File_axon_5 (all sweeps, 100-900 ms)."""
    return load_current_clamp(
        {
            "cell_18711001": {"file": "18711001.nc", "sweeps": [0, 2, 5]},
            "cell_File_axon_5": {"file": "File_axon_5.nc", "window_ms": (100, 900)},
        },
        window_ms=(0.0, 1500.0),
        base_dir=DATA_DIR,
    )


def _write_recording(
    path: Path,
    voltage_mv: np.ndarray,
    current_pa: np.ndarray,
    interval_s: float = 5e-5,
) -> Path:
    """Write a synthetic recording in the layout of the shipped files."""
    time_s = interval_s * np.arange(voltage_mv.shape[-1])
    xr.Dataset(
        {
            "voltage": (("sweep", "time"), voltage_mv, {"units": "mV"}),
            "command_current": (("sweep", "time"), current_pa, {"units": "pA"}),
        },
        coords={
            "sweep": np.arange(voltage_mv.shape[0]),
            "time": ("time", time_s, {"units": "s"}),
        },
    ).to_netcdf(path)
    return path


def test_loaded_dataset_follows_the_recordings_convention(two_cells):
    assert dict(two_cells.sizes) == {"subject": 2, "sweep": 9, "time": 1500}
    assert list(two_cells["subject"].values) == ["cell_18711001", "cell_File_axon_5"]
    assert list(two_cells["sweep"].values) == list(range(9))
    assert two_cells["time"].dtype == np.float64
    assert two_cells["time"].attrs["units"] == "ms"

    expected = [("voltage", "mV", "observed"), ("current", "pA", "input")]
    for name, units, role in expected:
        variable = two_cells[name]
        assert variable.dims == ("subject", "sweep", "time")
        assert variable.dtype == np.float64
        assert variable.attrs["units"] == units
        assert variable.attrs["role"] == role

    assert two_cells["sweep_number"].sel(subject="cell_18711001").values.tolist() == [
        0,
        2,
        5,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
    ]
    assert two_cells["source_file"].values.tolist() == ["18711001.nc", "File_axon_5.nc"]


def test_provenance_attributes_round_trip_through_netcdf(two_cells, tmp_path):
    two_cells.to_netcdf(tmp_path / "recordings.nc")
    with xr.open_dataset(tmp_path / "recordings.nc") as reloaded:
        assert json.loads(reloaded.attrs["window_ms"]) == {
            "cell_18711001": [0.0, 1500.0],
            "cell_File_axon_5": [100.0, 900.0],
        }
        assert json.loads(reloaded.attrs["sweeps"])["cell_18711001"] == [0, 2, 5]
        assert reloaded.attrs["downsample_ms"] == 1.0
        sources = json.loads(reloaded.attrs["source_attributes"])
        axon_path = sources["cell_File_axon_5"]["source_path"]
        assert axon_path == "data/abfs/File_axon_5.abf"
        assert sources["cell_18711001"]["source_commit"].startswith("3ad9cd6f")


def test_subjects_with_different_windows_share_a_union_grid_padded_with_nan(two_cells):
    time = two_cells["time"].values
    np.testing.assert_array_equal(time, np.arange(1500.0))

    axon = two_cells["voltage"].sel(subject="cell_File_axon_5")
    recorded = (time >= 100) & (time < 900)
    assert np.isfinite(axon.values[:, recorded]).all()
    assert np.isnan(axon.values[:, ~recorded]).all()

    cell = two_cells["voltage"].sel(subject="cell_18711001")
    assert np.isfinite(cell.values[:3]).all()
    assert np.isnan(cell.values[3:]).all()
    # An input must be finite wherever its observation is.
    current_finite = np.isfinite(two_cells["current"].values)
    assert np.array_equal(current_finite, np.isfinite(two_cells["voltage"].values))


def test_time_grid_lands_on_multiples_of_downsample_from_window_start():
    dataset = load_current_clamp(
        {"cell": {"file": "18713001.nc", "sweeps": [0], "window_ms": FICURVE_STEP_MS}},
        downsample_ms=2.5,
        base_dir=DATA_DIR,
    )
    np.testing.assert_allclose(
        dataset["time"].values, 823.4 + 2.5 * np.arange(200), rtol=0, atol=1e-9
    )


def test_select_subject_keeps_only_that_subjects_recorded_samples(two_cells):
    axon = select_subject(two_cells, "cell_File_axon_5")
    assert axon["voltage"].dims == ("sweep", "time")
    assert axon["time"].values[[0, -1]].tolist() == [100.0, 899.0]
    assert np.isfinite(axon["voltage"].values).all()

    cell = select_subject(two_cells, "cell_18711001")
    assert dict(cell.sizes) == {"sweep": 3, "time": 1500}
    assert cell["sweep_number"].values.tolist() == [0, 2, 5]


def test_downsampled_voltage_matches_raw_mean_over_flat_baseline(two_cells):
    baseline_ms = (600.0, 800.0)  # after the pre-pulse has decayed, before the step
    with xr.open_dataset(DATA_DIR / "18711001.nc") as raw:
        time_ms = raw["time"].values * 1000
        in_baseline = (time_ms >= baseline_ms[0]) & (time_ms < baseline_ms[1])
        raw_mean = raw["voltage"].values[2, in_baseline].mean()

    downsampled = two_cells["voltage"].sel(subject="cell_18711001", sweep=1)
    downsampled_mean = downsampled.sel(time=slice(*baseline_ms)).values[:-1].mean()
    assert abs(downsampled_mean - raw_mean) < 0.1


def test_voltage_above_new_nyquist_is_filtered_out_not_aliased(tmp_path):
    # 900 Hz lies above the 500 Hz Nyquist of a 1 ms grid; plain picking of every
    # 20th sample would fold it to a 100 Hz wave of the same 5 mV amplitude.
    time_s = 5e-5 * np.arange(20_000)
    voltage = -65.0 + 5.0 * np.sin(2 * np.pi * 900.0 * time_s)[None, :]
    path = _write_recording(tmp_path / "sine.nc", voltage, np.zeros_like(voltage))

    dataset = load_current_clamp({"cell": {"file": path, "window_ms": (100, 900)}})
    residual = dataset["voltage"].values + 65.0
    assert np.abs(residual).max() < 0.05


def test_current_keeps_exact_command_levels_and_one_sample_step_edges(two_cells):
    current = two_cells["current"].sel(subject="cell_18711001", sweep=2)
    assert set(np.unique(current.values)) == {-100.0, 0.0, 50.0}
    # The step starts at 823.4 ms: the 823 ms sample still holds 0 pA, 824 ms
    # already holds the full step; no filtered value in between.
    assert current.sel(time=[822.0, 823.0, 824.0, 825.0]).values.tolist() == [
        0.0,
        0.0,
        50.0,
        50.0,
    ]


def test_missing_file_names_subject_file_and_base_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.nc.*'cell_x'.*base_dir"):
        load_current_clamp({"cell_x": "absent.nc"}, base_dir=tmp_path)


@pytest.mark.parametrize("missing", ["voltage", "command_current"])
def test_file_without_required_variable_names_it_and_the_layout(tmp_path, missing):
    samples = np.zeros((1, 100))
    path = _write_recording(tmp_path / "partial.nc", samples, samples)
    with xr.open_dataset(path) as full:
        partial = full.drop_vars(missing).load()
    partial.to_netcdf(tmp_path / "lacking.nc")
    with pytest.raises(
        ValueError, match=rf"lacking\.nc.*'cell_y'.*no variable '{missing}'.*convert"
    ):
        load_current_clamp({"cell_y": tmp_path / "lacking.nc"})


def test_sweep_out_of_range_lists_the_sweeps_that_exist():
    with pytest.raises(
        ValueError, match=r"\[30\].*'cell_z'.*18711001\.nc.*sweeps 0 to 29.*choose"
    ):
        load_current_clamp(
            {"cell_z": {"file": "18711001.nc", "sweeps": [0, 30]}}, base_dir=DATA_DIR
        )


def test_window_outside_recording_states_the_recording_extent():
    with pytest.raises(
        ValueError, match=r"'cell_w'.*File_axon_5\.nc.*spans 0 to 1000 ms.*within"
    ):
        load_current_clamp(
            {"cell_w": {"file": "File_axon_5.nc", "window_ms": (500, 1200)}},
            base_dir=DATA_DIR,
        )


def test_downsample_finer_than_sampling_interval_names_the_interval():
    with pytest.raises(
        ValueError, match=r"0\.01.*0\.05 ms.*File_axon_5\.nc.*'cell_v'.*>= 0\.05"
    ):
        load_current_clamp(
            {"cell_v": "File_axon_5.nc"}, downsample_ms=0.01, base_dir=DATA_DIR
        )


@pytest.mark.parametrize("downsample_ms", [0, -1.0, float("nan"), "1", True])
def test_downsample_that_is_not_a_positive_number_is_rejected(downsample_ms):
    with pytest.raises(
        ValueError, match=r"downsample_ms must be a positive number.*1\.0"
    ):
        load_current_clamp(
            {"cell_u": "File_axon_5.nc"},
            downsample_ms=downsample_ms,
            base_dir=DATA_DIR,
        )


def test_select_subject_with_unknown_name_lists_the_available_subjects(two_cells):
    with pytest.raises(
        ValueError, match=r"'cell_q'.*'cell_18711001', 'cell_File_axon_5'.*Pass one"
    ):
        select_subject(two_cells, "cell_q")
