"""Bad input: each flaw of real data gets a clear error, or is handled exactly.

The decay y = 5 exp(-0.3 t) with known y0 = 5 (``exponential_decay`` from
``decay_model.py``) is small enough to fit in seconds, and its rows can be
shuffled, repeated, placed at t0 or before it.
"""

import json
import pathlib

import jax
import numpy as np
import pytest
import xarray as xr
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood

import bayesude
from bayesude.batch import run_workflow
from bayesude.data import DataValidationError, load_csv, load_current_clamp
from bayesude.inference.model import build_model
from bayesude.inference.prepared_data import prepare_data
from bayesude.predictions import observation_predictions
from bayesude.workflow import load_workflow

SHUFFLED_TIMES = [4.0, 0.5, 2.0, 2.0, 7.5, 1.0]
SHUFFLED_VALUES = [1.536, 4.2835, 2.7541, 2.7041, 0.547, 3.7041]
# The model is built directly in some tests, so its adjoint is named, not "automatic".
SOLVER = bayesude.SolverSettings(adjoint="recursive_checkpoint")
DECAY_SPEC = bayesude.ModelSpecification(
    mechanistic="exponential_decay",
    observed={"y": "y"},
    initial_state={"y": 5.0},
    solver=SOLVER,
)
AT_THE_TRUTH = {"k": np.array(0.3), "sigma_y": np.array(0.05)}


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def decay_csv(tmp_path, rows, name="decay.csv", header="subject,time,y\nunits,s,1\n"):
    body = "".join(f"{s},{t},{y}\n" for s, t, y in rows)
    return write(tmp_path / name, header + body)


def total_log_likelihood(data: xr.Dataset, subject: str) -> float:
    prepared = prepare_data(DECAY_SPEC, data, subject)
    model = build_model(DECAY_SPEC, prepared).model
    return float(log_likelihood(model, AT_THE_TRUTH)["y"].sum())


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    rows = [("a", t, y) for t, y in zip(SHUFFLED_TIMES, SHUFFLED_VALUES)]
    path = decay_csv(tmp_path_factory.mktemp("shuffled"), rows)
    return bayesude.select_subject(load_csv(path, t0=0.0), "a")


@pytest.fixture(scope="module")
def shuffled_fit(shuffled):
    return bayesude.fit(
        DECAY_SPEC, shuffled, method="map", svi_steps=300, progress_bar=False
    )


def test_shuffled_rows_have_the_log_likelihood_of_the_same_rows_sorted(
    shuffled, tmp_path
):
    order = np.argsort(SHUFFLED_TIMES, kind="stable")
    rows = [("a", SHUFFLED_TIMES[i], SHUFFLED_VALUES[i]) for i in order]
    ordered = bayesude.select_subject(load_csv(decay_csv(tmp_path, rows), t0=0.0), "a")
    assert total_log_likelihood(shuffled, "a") == pytest.approx(
        total_log_likelihood(ordered, "a"), abs=1e-10
    )


def test_unsorted_times_get_predictions_in_the_users_row_order(shuffled_fit):
    observed = shuffled_fit.observed_data["y"]
    assert observed["row"].values.tolist() == list(range(6))
    assert observed["time"].values.tolist() == SHUFFLED_TIMES
    np.testing.assert_array_equal(observed.values, SHUFFLED_VALUES)
    assert shuffled_fit.log_likelihood["y"].shape[-1] == 6

    k = shuffled_fit.posterior["k"].values.item()
    assert k == pytest.approx(0.3, abs=0.01)
    predicted = observation_predictions(shuffled_fit, "y").values[0, 0]
    np.testing.assert_allclose(
        predicted, 5.0 * np.exp(-k * np.array(SHUFFLED_TIMES)), rtol=1e-5
    )


def test_duplicated_times_are_kept_and_get_equal_predictions(shuffled_fit):
    predicted = observation_predictions(shuffled_fit, "y").values
    repeated = [i for i, t in enumerate(SHUFFLED_TIMES) if t == 2.0]
    assert len(repeated) == 2
    np.testing.assert_array_equal(
        predicted[..., repeated[0]], predicted[..., repeated[1]]
    )


@pytest.mark.parametrize(
    "rows",
    [[("b", 0.0, 5.0), ("b", 0.0, 5.1), ("b", 1.0, 3.7)], [("c", 0.0, 5.02)]],
    ids=["t0-observed-twice", "only-observation-at-t0"],
)
def test_observation_at_t0_is_predicted_by_the_initial_state(tmp_path, rows):
    subject = rows[0][0]
    data = bayesude.select_subject(load_csv(decay_csv(tmp_path, rows), t0=0.0), subject)
    prepared = prepare_data(DECAY_SPEC, data, subject)
    model = build_model(DECAY_SPEC, prepared).model

    trajectory = Predictive(
        model,
        posterior_samples={"k": np.array([0.3]), "sigma_y": np.array([0.05])},
        return_sites=["y_trajectory"],
    )(jax.random.key(0), observe=False, record_trajectories=True)["y_trajectory"]
    at_t0 = np.asarray(trajectory)[0, 0, 0]
    assert at_t0 == 5.0
    assert np.isfinite(np.asarray(trajectory)).all()
    assert prepared.times[0] == 0.0


def test_time_before_t0_names_the_file_subject_row_and_fix(tmp_path):
    path = decay_csv(tmp_path, [("d", 0.5, 4.3), ("d", -1.0, 6.7), ("d", 2.0, 2.7)])
    with pytest.raises(DataValidationError, match="before t0") as error:
        load_csv(path, t0=0.0)
    message = str(error.value)
    for part in (str(path), "subject 'd'", "field 'time'", "Row 1", "-1", "set t0"):
        assert part in message


def test_time_before_t0_in_a_dataset_names_the_row(shuffled):
    early = shuffled.assign_coords(t0=1.0)
    with pytest.raises(
        DataValidationError, match=r"subject 'a'.*Row 1 of 'y'.*before t0"
    ):
        prepare_data(DECAY_SPEC, early, "a")


def test_empty_file_is_named_with_the_layout_to_write(tmp_path):
    path = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataValidationError, match=r"empty\.csv.*is empty.*header line"):
        load_csv(path)


def test_header_without_rows_says_rows_are_missing(tmp_path):
    path = write(tmp_path / "header.csv", "subject,time,y\nunits,s,1\n")
    with pytest.raises(DataValidationError, match="header but no data rows"):
        load_csv(path)


def test_missing_time_column_lists_the_columns_and_the_fix(tmp_path):
    path = write(tmp_path / "notime.csv", "subject,t,y\na,0,1\n")
    with pytest.raises(
        DataValidationError,
        match=r"notime\.csv.*field 'time'.*no time column 'time'.*\['subject', 't', "
        r"'y'\].*time_column in the sidecar",
    ):
        load_csv(path)


def test_row_with_a_different_number_of_cells_names_its_line(tmp_path):
    path = write(tmp_path / "ragged.csv", "subject,time,y\nunits,s,1\na,0,5\na,1\n")
    with pytest.raises(
        DataValidationError,
        match=r"ragged\.csv.*field 'line 4'.*Line 4 has 2 cells but the header has 3"
        r".*leave a cell empty",
    ):
        load_csv(path)


def test_nwb_stimulus_of_another_length_is_refused(tmp_path):
    from test_loaders import write_nwb

    path = write_nwb(tmp_path / "short.nwb", [np.zeros(100)], [np.zeros(90)])
    with pytest.raises(
        DataValidationError,
        match=r"short\.nwb.*'cell'.*field 'response_0'.*100 samples.*90.*must match",
    ):
        load_current_clamp({"cell": path})


def test_missing_units_say_where_to_state_them(tmp_path):
    path = write(tmp_path / "nounits.csv", "subject,time,y\na,0,5\na,1,3\n")
    with pytest.raises(
        DataValidationError,
        match=r"nounits\.csv.*field 'time'.*no units.*units row or sidecar",
    ):
        load_csv(path)


def test_time_in_units_that_are_not_time_is_refused(tmp_path):
    path = write(tmp_path / "wrong.csv", "subject,time,y\nunits,mV,1\na,0,5\n")
    with pytest.raises(
        DataValidationError, match=r"wrong\.csv.*'mV', which is not a unit of time"
    ):
        load_csv(path)


def test_units_that_cannot_be_converted_name_both_units(tmp_path):
    path = decay_csv(tmp_path, [("a", 0.0, 5.0)])
    with pytest.raises(
        DataValidationError, match=r"field 'y'.*in '1'.*cannot be converted to 'mV'"
    ):
        load_csv(path, convert_units={"y": "mV"})


def test_data_time_units_the_model_cannot_use_are_refused(passive_recording):
    wrong = passive_recording.assign_coords(
        time=passive_recording["time"].assign_attrs(units="mV")
    )
    spec = bayesude.ModelSpecification(
        mechanistic="passive_membrane", observed={"voltage": "V"}
    )
    with pytest.raises(DataValidationError, match=r"field 'time'.*'mV'.*'ms'"):
        prepare_data(spec, wrong, "cell")


def test_non_numeric_cell_names_line_column_and_value(tmp_path):
    path = write(tmp_path / "text.csv", "subject,time,y\nunits,s,1\na,0,5\na,1,abc\n")
    with pytest.raises(
        DataValidationError,
        match=r"text\.csv.*field 'y'.*Line 4 \(data row 1\) has 'abc'.*not a number"
        r".*leave it empty",
    ):
        load_csv(path)


def test_all_nan_subject_is_refused_naming_it(tmp_path):
    path = decay_csv(
        tmp_path, [("a", 0.0, 5.0), ("ghost", 0.0, "NaN"), ("ghost", 1.0, "")]
    )
    with pytest.raises(
        DataValidationError,
        match=r"subject 'ghost'.*field 'y'.*Every value.*missing",
    ):
        load_csv(path)


def test_all_nan_subject_is_left_out_and_recorded_when_collecting(tmp_path):
    path = decay_csv(tmp_path, [("a", 0.0, 5.0), ("ghost", 0.0, "NaN")])
    loaded = load_csv(path, errors="collect")
    assert loaded["subject"].values.tolist() == ["a"]
    assert "Every value" in json.loads(loaded.attrs["subject_errors"])["ghost"]


def test_corrupt_abf_file_is_named_with_the_fix(tmp_path):
    path = write(tmp_path / "broken.abf", "not an abf file" * 40)
    with pytest.raises(
        DataValidationError,
        match=r"broken\.abf.*subject 'cell'.*pyabf cannot read it.*copy it again",
    ):
        load_current_clamp({"cell": path})


def test_corrupt_nwb_file_is_named_with_the_fix(tmp_path):
    path = write(tmp_path / "broken.nwb", "not an hdf5 file" * 40)
    with pytest.raises(
        DataValidationError,
        match=r"broken\.nwb.*subject 'cell'.*pynwb cannot read it.*export it again",
    ):
        load_current_clamp({"cell": path})


WORKFLOW = """
name: decays
data:
  loader: csv
  {data_field}
models:
  decay:
    mechanistic: exponential_decay
    observed: {{y: y}}
    initial_state: {{y: 1.0}}
inference: {{method: map, svi_steps: 100, init: prior}}
execution: {{workers: 0}}
"""


@pytest.mark.parametrize(
    ("data_field", "message"),
    [
        (
            "subjects: {cell_a: {file: absent.csv}}",
            r"workflow\.yaml: data\.subjects\.cell_a\.file names absent\.csv, which "
            r"does not exist.*relative to the workflow file",
        ),
        (
            "files: 'recordings/*.csv'",
            r"workflow\.yaml: data\.files is 'recordings/\*\.csv', which matches no "
            r"file.*fix the path or pattern",
        ),
    ],
    ids=["subject-file", "glob"],
)
def test_workflow_naming_a_missing_file_names_the_field(tmp_path, data_field, message):
    workflow = write(tmp_path / "workflow.yaml", WORKFLOW.format(data_field=data_field))
    with pytest.raises(FileNotFoundError, match=message):
        load_workflow(workflow).load_data()


DECAY_RATES = {"A": 0.2, "B": 0.35, "C": 0.5}


def decay_cells() -> xr.Dataset:
    """Three cells of y = exp(-k t) (sigma 0.02) and an all-NaN fourth.

    A has 10 observations; B has 6, padded with NaN to 10; C has 10 with NaN
    at positions 4 and 7; D has none.
    """
    rng = np.random.default_rng(7)
    times = np.arange(10.0)
    values = np.full((4, 10), np.nan)
    for index, k in enumerate(DECAY_RATES.values()):
        values[index] = np.exp(-k * times) + 0.02 * rng.standard_normal(10)
    values[1, 6:] = np.nan
    values[2, [4, 7]] = np.nan
    return xr.Dataset(
        {"y": (("subject", "time"), values, {"units": "1", "role": "observed"})},
        coords={
            "subject": ["A", "B", "C", "D"],
            "time": ("time", times, {"units": "s"}),
            "t0": ("subject", np.zeros(4)),
        },
    )


CELL_SPEC = bayesude.ModelSpecification(
    mechanistic="exponential_decay",
    observed={"y": "y"},
    initial_state={"y": 1.0},
    solver=SOLVER,
)


def test_nan_observations_are_masked_not_imputed():
    cell = decay_cells().sel(subject="C")
    dropped = cell.isel(time=np.flatnonzero(np.isfinite(cell["y"].values)))
    masked = prepare_data(CELL_SPEC, cell, "C")
    kept = prepare_data(CELL_SPEC, dropped, "C")

    assert masked.observed["y"].values.size == 8
    np.testing.assert_array_equal(masked.times, kept.times)
    np.testing.assert_array_equal(
        masked.observed["y"].values, kept.observed["y"].values
    )
    np.testing.assert_array_equal(
        masked.observed["y"].time_index, kept.observed["y"].time_index
    )
    params = {"k": np.array(0.45), "sigma_y": np.array(0.03)}
    masked_model = build_model(CELL_SPEC, masked).model
    kept_model = build_model(CELL_SPEC, kept).model
    assert float(log_likelihood(masked_model, params)["y"].sum()) == pytest.approx(
        float(log_likelihood(kept_model, params)["y"].sum()), abs=1e-12
    )


def test_nan_padding_and_missing_samples_cause_no_divergence_under_nuts():
    cell = decay_cells().sel(subject="C")
    idata = bayesude.fit(
        CELL_SPEC,
        cell,
        num_chains=2,
        num_warmup=150,
        num_samples=150,
        init="prior",
        seed=3,
        progress_bar=False,
    )
    assert int(idata.sample_stats["diverging"].sum()) == 0
    assert idata.log_likelihood["y"].shape[-1] == 8
    assert not [name for name in idata.posterior.data_vars if "unobserved" in name]
    assert idata.posterior["k"].mean().item() == pytest.approx(0.5, abs=0.05)


def test_batch_reports_the_all_nan_subject_and_fits_the_others(tmp_path):
    decay_cells().to_netcdf(tmp_path / "cells.nc")
    workflow = write(
        tmp_path / "workflow.yaml",
        WORKFLOW.replace("loader: csv", "loader: netcdf").format(
            data_field="files: cells.nc"
        ),
    )
    summary = run_workflow(
        load_workflow(workflow), tmp_path / "results", progress_bar=False
    )

    failed = summary[summary["subject"] == "D"]
    assert failed["problems"].item().startswith("fit failed: In file ")
    assert "subject 'D'" in failed["problems"].item()
    assert "Every value of the observed variable(s) ['y'] is missing" in (
        failed["problems"].item()
    )
    fitted = sorted((tmp_path / "results" / "fits").glob("*.nc"))
    assert [p.name for p in fitted] == ["A__decay.nc", "B__decay.nc", "C__decay.nc"]
    entries = sum(
        bayesude.load_fit(path).log_likelihood["y"].shape[-1] for path in fitted
    )
    assert entries == 24
