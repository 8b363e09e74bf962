"""Running a workflow: every subject × model fit, then the summary and the report.

Fits run on a Dask cluster of worker processes: a local one by default, or an
existing cluster given by its scheduler address; with ``workers=0`` they run one
after another in this process. A worker receives one subject's data and the
model specification as plain data, never compiled objects, and sends back the
fit as NetCDF bytes, so results land in the results directory whether or not
the worker shares its filesystem.

Faults are data: a fit that fails is recorded with its reason and the others go
on; a worker that dies costs only the fits it was running, which Dask reruns
elsewhere. Every saved fit carries a content hash of its data, specification
and settings, so rerunning an interrupted workflow skips the fits already done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
import tempfile
import time
import traceback
import uuid
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from bayesude.core.specification import specification_from_dict
from bayesude.data import select_subject
from bayesude.decoding import load_spike_subjects
from bayesude.diagnostics import summarise_fits
from bayesude.files import atomic_path
from bayesude.report import write_report, write_summary_files
from bayesude.results import load_fit
from bayesude.workflow import SPIKE_COUNT_LOADERS, Workflow

logger = logging.getLogger(__name__)

SUMMARY_FILENAME = "summary.csv"
FITS_FOLDER = "fits"
HIERARCHICAL_FOLDER = "hierarchical"

#: Attribute of a saved fit's posterior holding the hash of what produced it.
CONTENT_HASH_ATTRIBUTE = "content_hash"

#: Bumped when a change to the fitting code should invalidate finished fits.
_HASH_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FitTask:
    """Everything one worker needs for one independent fit, as plain data.

    Attributes
    ----------
    subject, model_name
        Labels of the fit.
    specification
        The model specification as a plain mapping
        (:meth:`ModelSpecification.as_dict`).
    data
        The subject's recording, dims ``(sweep, time)``.
    inference
        Keyword arguments of :func:`bayesude.fit`, with the workflow's seed.
    """

    subject: str
    model_name: str
    specification: dict[str, Any]
    data: xr.Dataset
    inference: dict[str, Any]
    data_error: str | None = None

    @property
    def path(self) -> pathlib.Path:
        """Where the fit is saved, relative to the results directory."""
        return pathlib.Path(FITS_FOLDER) / f"{self.subject}__{self.model_name}.nc"

    @property
    def size(self) -> tuple[int, int]:
        """Sort key of the expected run time: networks, then time points."""
        return (
            len(self.specification["neural_terms"]),
            int(self.data.sizes.get("time", 0)),
        )

    def content_hash(self) -> str:
        """Hash of the data, specification and settings that determine the fit."""
        return _hash_of(
            {
                "kind": "independent",
                "subject": self.subject,
                "model_name": self.model_name,
                "specification": self.specification,
                "inference": self.inference,
            },
            self.data,
        )

    def run(self) -> az.InferenceData:
        from bayesude.inference.fit import fit

        spec = specification_from_dict(self.specification, f"models.{self.model_name}")
        settings = dict(self.inference)
        settings["seed"] = fit_seed(settings["seed"], self.subject, self.model_name)
        return fit(
            spec,
            self.data,
            progress_bar=False,
            subject=self.subject,
            model_name=self.model_name,
            **settings,
        )


@dataclasses.dataclass(frozen=True)
class HierarchicalTask:
    """One hierarchical fit of a model over all subjects, as plain data.

    Attributes
    ----------
    model_name
        The model's name in the workflow.
    specification
        The model specification as a plain mapping.
    data
        All subjects' recordings, dims ``(subject, sweep, time)``.
    inference
        Keyword arguments of :func:`bayesude.fit`, with the workflow's seed.
    hierarchical
        Pooling settings (:class:`bayesude.workflow.HierarchicalSection`).
    """

    model_name: str
    specification: dict[str, Any]
    data: xr.Dataset
    inference: dict[str, Any]
    hierarchical: dict[str, Any]

    subject = "all subjects"

    @property
    def path(self) -> pathlib.Path:
        return pathlib.Path(HIERARCHICAL_FOLDER) / f"{self.model_name}.nc"

    @property
    def size(self) -> tuple[int, int]:
        # Largest first: one model over every subject outlasts any single fit.
        return 10**6, int(self.data.sizes["subject"])

    def content_hash(self) -> str:
        return _hash_of(
            {
                "kind": "hierarchical",
                "model_name": self.model_name,
                "specification": self.specification,
                "inference": self.inference,
                "hierarchical": self.hierarchical,
            },
            self.data,
        )

    def run(self) -> az.InferenceData:
        from bayesude.inference.hierarchical import fit_hierarchical

        spec = specification_from_dict(self.specification, f"models.{self.model_name}")
        settings = dict(self.inference)
        settings["seed"] = fit_seed(settings["seed"], self.subject, self.model_name)
        return fit_hierarchical(
            spec,
            self.data,
            progress_bar=False,
            model_name=self.model_name,
            **self.hierarchical,
            **settings,
        )


Task = FitTask | HierarchicalTask


@dataclasses.dataclass(frozen=True)
class FitOutcome:
    """What came back from one fit: the NetCDF bytes, or why it failed.

    ``reused`` marks a fit skipped because an identical one was already saved;
    ``compile_time_s`` and ``num_compilations`` count the JAX compilation done
    by the worker during this fit (part of ``wall_time_s``).
    """

    subject: str
    model_name: str
    netcdf: bytes | None
    error: str | None
    wall_time_s: float
    compile_time_s: float = 0.0
    num_compilations: int = 0
    reused: bool = False


def fit_seed(base_seed: int, subject: str, model_name: str) -> int:
    """The seed of one fit: the workflow's seed combined with its subject and model.

    Every fit gets its own stream of random numbers, and rerunning a workflow
    reproduces every fit exactly, whatever order the fits finish in.
    """
    return (base_seed + zlib.crc32(f"{subject}/{model_name}".encode())) % (2**31)


def run_fit_task(task: Task) -> FitOutcome:
    """Run one fit; never raises (a failure is returned with its reason)."""
    import bayesude  # noqa: F401  (switches JAX to float64 in a fresh worker)
    from bayesude.compilation import CompilationMeter

    meter = CompilationMeter.instance()
    before = meter.snapshot()
    started = time.perf_counter()
    data_error = getattr(task, "data_error", None)
    if data_error is not None:
        return FitOutcome(task.subject, task.model_name, None, data_error, 0.0)
    try:
        idata = task.run()
        idata.posterior.attrs[CONTENT_HASH_ATTRIBUTE] = task.content_hash()
        netcdf, error = _netcdf_bytes(idata), None
    except Exception as failure:  # noqa: BLE001  (any failure is recorded, not raised)
        logger.debug("Fit failed:\n%s", traceback.format_exc())
        netcdf, error = None, f"{type(failure).__name__}: {failure}"
    compiled = meter.since(before)
    return FitOutcome(
        subject=task.subject,
        model_name=task.model_name,
        netcdf=netcdf,
        error=error,
        wall_time_s=time.perf_counter() - started,
        compile_time_s=compiled.compile_time_s,
        num_compilations=compiled.num_compilations,
    )


def _netcdf_bytes(idata: az.InferenceData) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "fit.nc"
        idata.to_netcdf(str(path))
        return path.read_bytes()


def _load_subjects(
    workflow: Workflow,
) -> tuple[xr.Dataset | None, dict[str, xr.Dataset], dict[str, str]]:
    """The workflow's data: all subjects together, each usable subject, and why
    each unusable subject was left out.

    Spike-count loaders read one file per subject and give no combined dataset.
    """
    loader = workflow.settings.data.loader
    if loader in SPIKE_COUNT_LOADERS:
        return None, load_spike_subjects(loader, workflow.subject_files()), {}
    recordings = workflow.load_data().load()
    unusable = json.loads(recordings.attrs.get("subject_errors", "{}"))
    subjects = {
        str(subject): select_subject(recordings, str(subject))
        for subject in recordings["subject"].values
    }
    return recordings, subjects, unusable


def _hash_of(settings: dict[str, Any], data: xr.Dataset) -> str:
    """SHA-256 of JSON settings and a dataset's values, coordinates and attributes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([_HASH_VERSION, settings], sort_keys=True).encode())
    for name in sorted(map(str, data.variables)):
        variable = data.variables[name]
        digest.update(json.dumps([name, variable.dims], default=str).encode())
        digest.update(json.dumps(variable.attrs, sort_keys=True, default=str).encode())
        values = np.ascontiguousarray(variable.values)
        digest.update(str(values.dtype).encode())
        digest.update(
            values.tobytes() if values.dtype != object else repr(values).encode()
        )
    digest.update(json.dumps(data.attrs, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def build_tasks(workflow: Workflow) -> list[Task]:
    """The workflow's fits: per subject and model, and/or one per model over all.

    A subject whose data could not be loaded gets tasks that carry the reason
    and fail at once, so it is reported and the other subjects are fitted.
    """
    recordings, subjects, unusable = _load_subjects(workflow)
    tasks: list[Task] = []
    if workflow.settings.fits in ("independent", "both"):
        for subject in [*subjects, *unusable]:
            subject_data = subjects.get(subject, xr.Dataset())
            for model_name, spec in workflow.specifications.items():
                tasks.append(
                    FitTask(
                        subject,
                        model_name,
                        spec.as_dict(),
                        subject_data,
                        workflow.inference[model_name],
                        data_error=unusable.get(subject),
                    )
                )
    if workflow.settings.fits in ("hierarchical", "both"):
        if recordings is None:
            raise ValueError(
                f"{workflow.path}: fits: {workflow.settings.fits} needs all subjects "
                f"in one dataset, which loader {workflow.settings.data.loader!r} "
                "does not give; use fits: independent."
            )
        pooling = workflow.settings.hierarchical.model_dump()
        for model_name, spec in workflow.specifications.items():
            tasks.append(
                HierarchicalTask(
                    model_name,
                    spec.as_dict(),
                    recordings,
                    workflow.inference[model_name],
                    pooling,
                )
            )
    return tasks


def run_workflow(
    workflow: Workflow,
    output_dir: pathlib.Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Fit every subject with every model, then write the summary and the report.

    Parameters
    ----------
    workflow
        The validated workflow.
    output_dir
        Results directory; receives ``fits/<subject>__<model>.nc``,
        ``hierarchical/<model>.nc`` for hierarchical fits, ``summary.csv``
        and ``report.html``.
    workers
        Worker processes of the local Dask cluster; 0 runs the fits in this
        process. None uses the workflow's ``execution.workers``.
    scheduler
        Address of an existing Dask scheduler (``tcp://HOST:PORT``) to use
        instead of a local cluster. None uses the workflow's
        ``execution.scheduler``.
    force
        Refit everything, even fits already saved with the same data and
        settings.
    progress_bar
        Show a bar counting finished fits.

    Returns
    -------
    pandas.DataFrame
        The summary table, one row per subject and model.
    """
    execution = workflow.settings.execution
    workers = execution.workers if workers is None else workers
    scheduler = execution.scheduler if scheduler is None else scheduler
    tasks = build_tasks(workflow)
    logger.info(
        "Workflow %s: %d fits of %d subjects and %d models.",
        workflow.name,
        len(tasks),
        len({task.subject for task in tasks}),
        len(workflow.specifications),
    )
    output_dir = pathlib.Path(output_dir)

    def run(batch: Sequence[Task], folder: pathlib.Path) -> list[FitOutcome]:
        return fit_batch(
            batch,
            folder,
            workers=workers,
            scheduler=scheduler,
            force=force,
            progress_bar=progress_bar,
        )

    outcomes = run(tasks, output_dir)
    if workflow.discovery:
        from bayesude.symbolic.pipeline import run_discovery

        more_tasks, more_outcomes = run_discovery(
            workflow, tasks, outcomes, output_dir, run
        )
        tasks, outcomes = tasks + more_tasks, outcomes + more_outcomes
    return write_outputs(output_dir, workflow.name, tasks, outcomes)


def fit_batch(
    tasks: Sequence[Task],
    output_dir: str | pathlib.Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    force: bool = False,
    progress_bar: bool = True,
) -> list[FitOutcome]:
    """Run fits on a Dask cluster and save each one as it arrives.

    Parameters
    ----------
    tasks
        The fits to run.
    output_dir
        Results directory; each fit is written atomically to ``task.path``
        inside it.
    workers
        Worker processes of a local cluster (spawned, never forked, so JAX
        in the parent cannot deadlock them); 0 fits in this process.
    scheduler
        Address of an existing Dask scheduler; overrides ``workers``.
    force
        Refit tasks whose fit is already saved with the same content hash.
    progress_bar
        Show a bar counting finished fits.

    Returns
    -------
    list of FitOutcome
        One per task, in the order the fits finished (reused fits first).
    """
    output_dir = pathlib.Path(output_dir)
    to_run, outcomes = [], []
    for task in tasks:
        if not force and _saved_hash(output_dir / task.path) == task.content_hash():
            outcomes.append(
                FitOutcome(task.subject, task.model_name, None, None, 0.0, reused=True)
            )
            _store_views(task, output_dir, missing_only=True)
        else:
            to_run.append(task)
    if outcomes:
        logger.info(
            "%d of %d fits already done with the same data and settings; "
            "%d to run (use force to refit all).",
            len(outcomes),
            len(tasks),
            len(to_run),
        )

    started = time.perf_counter()
    bar = tqdm(
        total=len(to_run), desc="fits finished", unit="fit", disable=not progress_bar
    )
    for task, outcome in _outcomes(to_run, workers, scheduler):
        _store(task, outcome, output_dir)
        outcomes.append(outcome)
        bar.update(1)
    bar.close()
    if to_run:
        logger.info(
            "%d fits finished in %.0f s.", len(to_run), time.perf_counter() - started
        )
    return outcomes


def _saved_hash(path: pathlib.Path) -> str | None:
    """The content hash stored with a saved fit, or None if there is none."""
    if not path.exists():
        return None
    try:
        with xr.open_dataset(path, group="posterior") as posterior:
            return posterior.attrs.get(CONTENT_HASH_ATTRIBUTE)
    except (OSError, ValueError):
        return None


def _outcomes(tasks, workers, scheduler) -> Iterator[tuple[Task, FitOutcome]]:
    if not tasks:
        return
    if workers == 0 and scheduler is None:
        for task in tasks:
            yield task, run_fit_task(task)
        return

    import dask
    from distributed import Client, LocalCluster, as_completed

    # Worker processes are spawned, never forked: a fork of a process in which
    # JAX has started its threads can deadlock.
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.WARNING,
            )
            client = Client(cluster)
        else:
            cluster, client = None, Client(scheduler)
    try:
        logger.info("Dask dashboard: %s", client.dashboard_link)
        # The longest fits start first, so no worker idles at the end; fits of
        # the same size run next to each other.
        ordered = sorted(tasks, key=lambda task: task.size, reverse=True)
        futures = {
            client.submit(
                run_fit_task,
                task,
                # Unique per submission: a result of an earlier run that the
                # scheduler still holds must not stand in for this one.
                key=f"fit-{task.subject}-{task.model_name}-{uuid.uuid4().hex[:8]}",
            ): task
            for task in ordered
        }
        for future in as_completed(futures):
            task = futures[future]
            try:
                yield task, future.result()
            except Exception as failure:  # noqa: BLE001  (e.g. a worker killed repeatedly)
                reason = f"{type(failure).__name__}: {failure}"
                yield task, FitOutcome(task.subject, task.model_name, None, reason, 0.0)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _store(task: Task, outcome: FitOutcome, output_dir: pathlib.Path) -> None:
    if outcome.error is not None:
        logger.warning(
            "Fit of %s to %s failed after %.0f s: %s",
            outcome.model_name,
            outcome.subject,
            outcome.wall_time_s,
            outcome.error,
        )
        return
    path = output_dir / task.path
    with atomic_path(path) as temporary:
        temporary.write_bytes(outcome.netcdf)
    _store_views(task, output_dir, missing_only=False)
    logger.info(
        "Fitted %s to %s in %.0f s (%.0f s compiling %d programs); saved %s.",
        outcome.model_name,
        outcome.subject,
        outcome.wall_time_s,
        outcome.compile_time_s,
        outcome.num_compilations,
        path,
    )


def _store_views(task: Task, output_dir: pathlib.Path, missing_only: bool) -> None:
    """Save a hierarchical fit's per-subject views beside the independent fits.

    Each view is laid out like an independent fit of model
    ``<model>_hierarchical``, so the summary and the report compare the two
    per subject on the same observations.
    """
    if not isinstance(task, HierarchicalTask):
        return
    from bayesude.hierarchical_results import subject_view, view_model_name

    view_name = view_model_name(task.model_name)
    subjects = [str(s) for s in task.data["subject"].values]
    paths = {s: output_dir / FITS_FOLDER / f"{s}__{view_name}.nc" for s in subjects}
    if missing_only and all(path.exists() for path in paths.values()):
        return
    idata = load_fit(output_dir / task.path)
    for subject, path in paths.items():
        with atomic_path(path) as temporary:
            subject_view(idata, subject).to_netcdf(str(temporary))


def _fit_paths(tasks: Sequence[Task], outcome: FitOutcome) -> list[pathlib.Path]:
    """Paths of the per-subject fits an outcome produced."""
    for task in tasks:
        if (task.subject, task.model_name) != (outcome.subject, outcome.model_name):
            continue
        if isinstance(task, HierarchicalTask):
            from bayesude.hierarchical_results import view_model_name

            name = view_model_name(task.model_name)
            return [
                pathlib.Path(FITS_FOLDER) / f"{s}__{name}.nc"
                for s in task.data["subject"].values
            ]
        return [task.path]
    return []


def write_outputs(output_dir, title, tasks, outcomes) -> pd.DataFrame:
    """Write ``summary.csv`` and ``report.html`` from the saved fits."""
    output_dir = pathlib.Path(output_dir)
    paths = [
        path
        for outcome in outcomes
        if outcome.error is None
        for path in _fit_paths(tasks, outcome)
    ]
    idatas = [
        load_fit(output_dir / path) for path in sorted(paths, key=_subject_order(tasks))
    ]
    summary = summarise_fits(idatas)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        summary = pd.concat(
            [summary, _failure_rows(failed, summary.columns)], ignore_index=True
        )
    write_summary_files(output_dir, summary)
    report = write_report(output_dir, idatas, summary, title)
    logger.info("Wrote %s and %s.", output_dir / SUMMARY_FILENAME, report)
    return summary


def _subject_order(tasks):
    """Sort key putting fits in the workflow's subject order, then by model."""
    subjects = list(dict.fromkeys(t.subject for t in tasks if isinstance(t, FitTask)))
    for task in tasks:
        if isinstance(task, HierarchicalTask):
            subjects += [
                str(s) for s in task.data["subject"].values if s not in subjects
            ]

    def key(path: pathlib.Path):
        subject, model = path.stem.split("__", 1)
        return subjects.index(subject) if subject in subjects else len(subjects), model

    return key


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


def rebuild_report(results_dir: pathlib.Path, title: str | None = None) -> pathlib.Path:
    """Rebuild the summary files and ``report.html`` from the saved fits."""
    results_dir = pathlib.Path(results_dir)
    paths = sorted((results_dir / FITS_FOLDER).glob("*.nc"))
    if not paths:
        raise FileNotFoundError(
            f"No fits in {results_dir / FITS_FOLDER}; run a workflow into "
            f"{results_dir} first."
        )
    idatas = [load_fit(path) for path in paths]
    summary = summarise_fits(idatas)
    write_summary_files(results_dir, summary)
    return write_report(results_dir, idatas, summary, title or results_dir.name)
