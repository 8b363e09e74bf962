"""Batch fits on Dask: same draws as a serial run, faults, and resuming."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import xarray as xr
from decay_cells import decay_cell, decay_specification

from bayesude import batch
from bayesude.batch import FitTask, fit_batch

# SVI keeps these tests about the batch machinery cheap; the machinery does not
# depend on the fitting method.
INFERENCE = {
    "method": "svi",
    "num_samples": 100,
    "seed": 3,
    "svi_steps": 300,
    "svi_learning_rate": 0.05,
}
LONG_TIMES_MS = np.linspace(0.0, 100.0, 50)
SHORT_TIMES_MS = np.linspace(0.0, 100.0, 37)


def _tasks(cells: dict[str, xr.Dataset]) -> list[FitTask]:
    spec = decay_specification().as_dict()
    return [
        FitTask(subject, "decay", spec, data, dict(INFERENCE))
        for subject, data in cells.items()
    ]


def _cells() -> dict[str, xr.Dataset]:
    empty = decay_cell(20.0, LONG_TIMES_MS, 0.02, seed=9)
    empty["voltage"][:] = np.nan
    return {
        "cell_a": decay_cell(15.0, LONG_TIMES_MS, 0.02, seed=1),
        "cell_short": decay_cell(20.0, SHORT_TIMES_MS, 0.02, seed=3),
        "cell_all_nan": empty,
    }


def _draws(output_dir, subject):
    with xr.open_dataset(
        output_dir / f"fits/{subject}__decay.nc", group="posterior"
    ) as p:
        return p["tau_m"].values


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 spawned worker processes, started after JAX is running."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=40,
    ) as local:
        yield local


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("serial")
    outcomes = fit_batch(_tasks(_cells()), output, workers=0, progress_bar=False)
    return output, {o.subject: o for o in outcomes}


@pytest.mark.timeout(1800)
def test_batch_on_two_local_workers_equals_the_serial_run_subject_by_subject(
    cluster, serial_run, tmp_path
):
    serial_dir, serial = serial_run
    outcomes = fit_batch(
        _tasks(_cells()),
        tmp_path,
        scheduler=cluster.scheduler_address,
        progress_bar=False,
    )
    parallel = {o.subject: o for o in outcomes}

    for subject in ("cell_a", "cell_short"):
        assert parallel[subject].error is None and serial[subject].error is None
        np.testing.assert_allclose(
            _draws(tmp_path, subject), _draws(serial_dir, subject), rtol=1e-12
        )
    assert 12 < np.median(_draws(tmp_path, "cell_a")) < 18


def test_a_cell_without_observations_is_reported_and_the_others_still_return(
    serial_run,
):
    output, outcomes = serial_run
    assert outcomes["cell_all_nan"].netcdf is None
    error = outcomes["cell_all_nan"].error
    assert "subject 'cell_all_nan', field 'voltage'" in error
    assert "no finite observation of voltage" in error
    assert not (output / "fits/cell_all_nan__decay.nc").exists()
    assert all(outcomes[s].error is None for s in ("cell_a", "cell_short"))


def test_compile_time_is_measured_apart_from_sampling(serial_run):
    _, outcomes = serial_run
    fitted = outcomes["cell_a"]
    assert fitted.num_compilations >= 1
    assert 0 < fitted.compile_time_s < fitted.wall_time_s


@pytest.mark.timeout(1800)
def test_a_worker_killed_mid_run_still_yields_every_result(cluster, tmp_path):
    from distributed import Client

    tasks = _tasks({k: v for k, v in _cells().items() if k != "cell_all_nan"})
    with Client(cluster) as client:
        pids = client.run(os.getpid)
        killed = []

        def kill_a_busy_worker():
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    time.sleep(2.0)  # let the fit get under way
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.2)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        outcomes = fit_batch(
            tasks, tmp_path, scheduler=cluster.scheduler_address, progress_bar=False
        )
        killer.join()

    assert killed, "no worker was busy, so none was killed"
    assert sorted(o.subject for o in outcomes) == ["cell_a", "cell_short"]
    assert all(o.error is None for o in outcomes)
    for task in tasks:
        assert (tmp_path / task.path).exists()


def test_interrupted_run_resumes_without_refitting_finished_subjects(
    serial_run, tmp_path, monkeypatch
):
    serial_dir, _ = serial_run
    tasks = _tasks({k: v for k, v in _cells().items() if k != "cell_all_nan"})
    # A run that finished cell_a and was interrupted while fitting cell_short.
    (tmp_path / "fits").mkdir()
    finished = tmp_path / "fits/cell_a__decay.nc"
    finished.write_bytes((serial_dir / "fits/cell_a__decay.nc").read_bytes())

    def interrupted(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_fit_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_batch(tasks, tmp_path, workers=0, progress_bar=False)
    assert sorted(p.name for p in (tmp_path / "fits").iterdir()) == ["cell_a__decay.nc"]

    monkeypatch.undo()
    finished_at = finished.stat().st_mtime_ns
    resumed = fit_batch(tasks, tmp_path, workers=0, progress_bar=False)
    assert {o.subject: o.reused for o in resumed} == {
        "cell_a": True,
        "cell_short": False,
    }
    assert finished.stat().st_mtime_ns == finished_at
    np.testing.assert_allclose(
        _draws(tmp_path, "cell_short"), _draws(serial_dir, "cell_short"), rtol=1e-12
    )

    forced = fit_batch(tasks[:1], tmp_path, workers=0, force=True, progress_bar=False)
    assert [o.reused for o in forced] == [False]
    assert finished.stat().st_mtime_ns != finished_at


def test_changed_data_or_force_refits_a_finished_subject(serial_run):
    serial_dir, _ = serial_run
    cells = _cells()
    task = _tasks({"cell_a": cells["cell_a"]})[0]
    assert batch._saved_hash(serial_dir / task.path) == task.content_hash()

    changed = cells["cell_a"].copy(deep=True)
    changed["voltage"][0, 5] += 0.01
    assert _tasks({"cell_a": changed})[0].content_hash() != task.content_hash()
    more_draws = FitTask(
        task.subject,
        task.model_name,
        task.specification,
        task.data,
        {**task.inference, "num_samples": 61},
    )
    assert more_draws.content_hash() != task.content_hash()


BOTH_WORKFLOW = """
name: tiny_both
data:
  downsample_ms: 4.0
  subjects:
    axon5:
      file: {data_file}
      sweeps: [0]
      window_ms: [180, 400]
models:
  passive:
    mechanistic: passive_membrane
    observed: {{voltage: V}}
inference: {{num_chains: 2, num_warmup: 40, num_samples: 40, init: prior}}
execution: {{workers: 0}}
fits: both
hierarchical: {{pooled: [tau_m]}}
"""


def test_workflow_with_hierarchical_fits_reports_them_beside_independent_ones(
    tmp_path,
):
    import pathlib

    import pandas as pd
    from click.testing import CliRunner

    from bayesude.cli import main

    data_file = pathlib.Path(__file__).parents[1] / "data/current_clamp/File_axon_5.nc"
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(BOTH_WORKFLOW.format(data_file=data_file))
    output = tmp_path / "results"
    command = ["run", str(workflow), "--output", str(output), "--no-progress"]

    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output
    assert (output / "hierarchical/passive.nc").exists()
    summary = pd.read_csv(output / "summary.csv")
    assert sorted(summary["model"]) == ["passive", "passive_hierarchical"]
    assert "passive_hierarchical" in (output / "report.html").read_text()

    saved = (output / "hierarchical/passive.nc").stat().st_mtime_ns
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    assert (output / "hierarchical/passive.nc").stat().st_mtime_ns == saved
