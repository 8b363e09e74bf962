"""Running a workflow: every subject × model fit, then the summary and the report.

Fits run on a Dask cluster of worker processes (a local one by default) or, with
``workers=0``, one after another in this process. A worker receives one
subject's data and the model specification as plain data, never compiled
objects, and sends back the fit as NetCDF bytes, so results land in the results
directory whether or not the worker shares its filesystem. A fit that fails is
recorded with its reason and the others go on.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
import time
import traceback
import zlib
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from bayesude.core.specification import specification_from_dict
from bayesude.datasets import load_datasets
from bayesude.diagnostics import summarise_fits
from bayesude.files import atomic_path
from bayesude.recordings import load_current_clamp, select_subject
from bayesude.report import write_report
from bayesude.results import load_fit
from bayesude.workflow import Workflow

logger = logging.getLogger(__name__)

SUMMARY_FILENAME = "summary.csv"
FITS_FOLDER = "fits"


@dataclasses.dataclass(frozen=True)
class FitTask:
    """Everything one worker needs for one fit, as plain picklable data."""

    subject: str
    model_name: str
    specification: dict[str, Any]
    data: xr.Dataset
    inference: dict[str, Any]

    @property
    def filename(self) -> str:
        return f"{self.subject}__{self.model_name}.nc"


@dataclasses.dataclass(frozen=True)
class FitOutcome:
    """What came back from one fit: the NetCDF bytes, or why it failed."""

    subject: str
    model_name: str
    netcdf: bytes | None
    error: str | None
    wall_time_s: float


def fit_seed(base_seed: int, subject: str, model_name: str) -> int:
    """The seed of one fit: the workflow's seed combined with its subject and model.

    Every fit gets its own stream of random numbers, and rerunning a workflow
    reproduces every fit exactly, whatever order the fits finish in.
    """
    return (base_seed + zlib.crc32(f"{subject}/{model_name}".encode())) % (2**31)


def run_fit_task(task: FitTask) -> FitOutcome:
    """Run one fit; never raises (a failure is returned with its reason)."""
    import bayesude  # noqa: F401  (switches JAX to float64 in a fresh worker)
    from bayesude.inference.fit import fit

    started = time.perf_counter()
    try:
        spec = specification_from_dict(task.specification, f"models.{task.model_name}")
        settings = dict(task.inference)
        settings["seed"] = fit_seed(settings["seed"], task.subject, task.model_name)
        idata = fit(
            spec,
            task.data,
            progress_bar=False,
            subject=task.subject,
            model_name=task.model_name,
            **settings,
        )
        netcdf = _netcdf_bytes(idata)
        return FitOutcome(
            task.subject, task.model_name, netcdf, None, time.perf_counter() - started
        )
    except Exception as error:  # noqa: BLE001  (any failure is recorded, not raised)
        logger.debug("Fit failed:\n%s", traceback.format_exc())
        reason = f"{type(error).__name__}: {error}"
        return FitOutcome(
            task.subject, task.model_name, None, reason, time.perf_counter() - started
        )


def _netcdf_bytes(idata: az.InferenceData) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "fit.nc"
        idata.to_netcdf(str(path))
        return path.read_bytes()


def build_tasks(workflow: Workflow) -> list[FitTask]:
    """One task per subject and model, with each subject's data selected."""
    data_settings = workflow.settings.data
    if data_settings.loader == "dataset":
        recordings = load_datasets(workflow.subject_files())
    else:
        recordings = load_current_clamp(
            workflow.subject_files(),
            window_ms=data_settings.window_ms,
            downsample_ms=data_settings.downsample_ms,
        )
    tasks = []
    for subject in data_settings.subjects:
        subject_data = select_subject(recordings, subject).load()
        for model_name, spec in workflow.specifications.items():
            tasks.append(
                FitTask(
                    subject,
                    model_name,
                    spec.as_dict(),
                    subject_data,
                    workflow.inference[model_name],
                )
            )
    return tasks


def run_workflow(
    workflow: Workflow,
    output_dir: pathlib.Path,
    *,
    workers: int | None = None,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Fit every subject with every model, then write the summary and the report.

    Parameters
    ----------
    workflow
        The validated workflow.
    output_dir
        Results directory; receives ``fits/<subject>__<model>.nc``,
        ``summary.csv`` and ``report.html``.
    workers
        Worker processes of the local Dask cluster; 0 runs the fits in this
        process. None uses the workflow's ``execution.workers``.
    progress_bar
        Show a bar counting finished fits.

    Returns
    -------
    pandas.DataFrame
        The summary table, one row per subject and model.
    """
    workers = workflow.settings.execution.workers if workers is None else workers
    output_dir = pathlib.Path(output_dir)
    tasks = build_tasks(workflow)
    logger.info(
        "Workflow %s: %d fits (%d subjects × %d models) on %s.",
        workflow.name,
        len(tasks),
        len(workflow.settings.data.subjects),
        len(workflow.specifications),
        f"{workers} worker processes" if workers else "this process",
    )
    started = time.perf_counter()
    outcomes = _run_tasks(tasks, workers, output_dir, progress_bar)
    if workflow.discovery:
        from bayesude.symbolic.pipeline import run_discovery

        more_tasks, more_outcomes = run_discovery(
            workflow,
            tasks,
            outcomes,
            output_dir,
            lambda extra, folder: _run_tasks(extra, workers, folder, progress_bar),
        )
        tasks, outcomes = tasks + more_tasks, outcomes + more_outcomes
    logger.info("All fits finished in %.0f s.", time.perf_counter() - started)
    return write_outputs(output_dir, workflow.name, tasks, outcomes)


def _run_tasks(tasks, workers, output_dir, progress_bar) -> list[FitOutcome]:
    bar = tqdm(
        total=len(tasks), desc="fits finished", unit="fit", disable=not progress_bar
    )
    outcomes = []
    for outcome in _outcomes(tasks, workers):
        _store(outcome, output_dir)
        outcomes.append(outcome)
        bar.update(1)
    bar.close()
    return outcomes


def _outcomes(tasks, workers):
    if workers == 0:
        for task in tasks:
            yield run_fit_task(task)
        return

    from distributed import Client, LocalCluster, as_completed

    # Worker processes are spawned, never forked: JAX is not safe across fork.
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        logger.info("Dask dashboard: %s", client.dashboard_link)
        # Models with networks take longest; starting them first keeps the
        # other workers from idling at the end.
        longest_first = sorted(
            tasks, key=lambda task: -len(task.specification["neural_terms"])
        )
        futures = [
            client.submit(run_fit_task, task, pure=False) for task in longest_first
        ]
        for future in as_completed(futures):
            yield future.result()


def _store(outcome: FitOutcome, output_dir: pathlib.Path) -> None:
    if outcome.error is not None:
        logger.warning(
            "Fit of %s to %s failed after %.0f s: %s",
            outcome.model_name,
            outcome.subject,
            outcome.wall_time_s,
            outcome.error,
        )
        return
    path = output_dir / FITS_FOLDER / f"{outcome.subject}__{outcome.model_name}.nc"
    with atomic_path(path) as temporary:
        temporary.write_bytes(outcome.netcdf)
    logger.info(
        "Fitted %s to %s in %.0f s; saved %s.",
        outcome.model_name,
        outcome.subject,
        outcome.wall_time_s,
        path,
    )


def write_outputs(output_dir, title, tasks, outcomes) -> pd.DataFrame:
    """Write ``summary.csv`` and ``report.html`` from the saved fits."""
    order = {(t.subject, t.model_name): i for i, t in enumerate(tasks)}
    succeeded = sorted(
        (o for o in outcomes if o.error is None),
        key=lambda o: order[(o.subject, o.model_name)],
    )
    idatas = [
        load_fit(output_dir / FITS_FOLDER / f"{o.subject}__{o.model_name}.nc")
        for o in succeeded
    ]
    summary = summarise_fits(idatas)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        summary = pd.concat(
            [summary, _failure_rows(failed, summary.columns)], ignore_index=True
        )
    _write_csv_atomically(summary, output_dir / SUMMARY_FILENAME)
    report = write_report(output_dir, idatas, summary, title)
    logger.info("Wrote %s and %s.", output_dir / SUMMARY_FILENAME, report)
    return summary


def _failure_rows(failed: list[FitOutcome], columns) -> pd.DataFrame:
    rows = []
    for outcome in failed:
        row = {column: np.nan for column in columns}
        row.update(
            subject=outcome.subject,
            model=outcome.model_name,
            converged=False,
            problems=f"fit failed: {outcome.error}",
            wall_time_s=outcome.wall_time_s,
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _write_csv_atomically(table: pd.DataFrame, path: pathlib.Path) -> None:
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def rebuild_report(results_dir: pathlib.Path, title: str | None = None) -> pathlib.Path:
    """Rebuild ``summary.csv`` and ``report.html`` from the fits in ``results_dir``."""
    results_dir = pathlib.Path(results_dir)
    paths = sorted((results_dir / FITS_FOLDER).glob("*.nc"))
    if not paths:
        raise FileNotFoundError(
            f"No fits in {results_dir / FITS_FOLDER}; run a workflow into "
            f"{results_dir} first."
        )
    idatas = [load_fit(path) for path in paths]
    summary = summarise_fits(idatas)
    _write_csv_atomically(summary, results_dir / SUMMARY_FILENAME)
    return write_report(results_dir, idatas, summary, title or results_dir.name)
