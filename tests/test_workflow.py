"""Workflow files and the command line: a tiny run end to end, and clear errors."""

import pathlib

import pandas as pd
import pytest
from click.testing import CliRunner

from bayesude.cli import main
from bayesude.workflow import load_workflow

DATA_FILE = (
    pathlib.Path(__file__).parents[1] / "data" / "current_clamp" / "File_axon_5.nc"
)

TINY_WORKFLOW = f"""
name: tiny
data:
  downsample_ms: 4.0
  subjects:
    axon5:
      file: {DATA_FILE}
      sweeps: [0]
      window_ms: [180, 400]
models:
  passive:
    mechanistic: passive_membrane
    observed: {{voltage: V}}
inference:
  num_chains: 2
  num_warmup: 40
  num_samples: 40
  init: prior
execution:
  workers: 0
"""


def _write(tmp_path, text, name="workflow.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cli_runs_a_tiny_workflow_and_writes_fits_summary_and_report(tmp_path):
    workflow = _write(tmp_path, TINY_WORKFLOW)
    output = tmp_path / "results"
    result = CliRunner().invoke(
        main, ["run", str(workflow), "--output", str(output), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (output / "fits" / "axon5__passive.nc").exists()
    summary = pd.read_csv(output / "summary.csv")
    assert list(summary["subject"]) == ["axon5"] and list(summary["model"]) == [
        "passive"
    ]
    for column in (
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "divergences",
        "solver_failures",
        "elpd_loo",
        "elpd_loo_se",
        "wall_time_s",
    ):
        assert column in summary
    assert "data:image/png;base64," in (output / "report.html").read_text()

    rebuilt = CliRunner().invoke(main, ["report", str(output)])
    assert rebuilt.exit_code == 0, rebuilt.output


def test_workflow_naming_a_missing_file_says_which_field_and_how_to_fix(tmp_path):
    workflow = _write(
        tmp_path, TINY_WORKFLOW.replace(str(DATA_FILE), "no_such_cell.nc")
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"data.subjects.axon5.file names no_such_cell.nc.*relative to",
    ):
        load_workflow(workflow).subject_files()
    result = CliRunner().invoke(main, ["run", str(workflow)])
    assert result.exit_code == 2
    assert "no_such_cell.nc" in result.output and "Traceback" not in result.output


def test_malformed_workflow_file_is_reported_with_file_and_field(tmp_path):
    broken_yaml = _write(tmp_path, "name: x\ndata: [unclosed\n", "broken.yaml")
    with pytest.raises(ValueError, match="broken.yaml is not valid YAML"):
        load_workflow(broken_yaml)
    misspelt = _write(
        tmp_path, TINY_WORKFLOW.replace("num_chains", "num_chain"), "misspelt.yaml"
    )
    with pytest.raises(
        ValueError,
        match=r"(?s)misspelt.yaml has 1 problem.*inference.num_chain: unknown field",
    ):
        load_workflow(misspelt)
    missing = _write(tmp_path, "name: x\nmodels: {}\n", "missing.yaml")
    with pytest.raises(ValueError, match=r"data: required field is missing"):
        load_workflow(missing)


def test_model_observing_a_variable_the_data_lack_names_it_and_the_available_ones(
    tmp_path,
):
    workflow = _write(tmp_path, TINY_WORKFLOW.replace("{voltage: V}", "{potential: V}"))
    from bayesude.batch import build_tasks, run_fit_task

    outcome = run_fit_task(build_tasks(load_workflow(workflow))[0])
    assert outcome.netcdf is None
    assert "no variable(s) ['potential']" in outcome.error
    assert "Available variables: [" in outcome.error
