"""The ``bayesude`` command line: run a workflow, rebuild a report."""

from __future__ import annotations

import logging
import pathlib
import sys

import click

from bayesude.workflow import load_workflow


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log internals (DEBUG level) too.")
def main(verbose: bool) -> None:
    """Bayesian universal differential equations for neuroscience."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # JAX, ArviZ and Dask log their internals at INFO; a scientist needs none of
    # it. Dask sets its own levels when imported, so it is imported first.
    import distributed  # noqa: F401

    for noisy in ("jax", "arviz", "distributed", "numpyro"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@click.argument("workflow_file", type=click.Path(path_type=pathlib.Path))
@click.option(
    "--output",
    type=click.Path(path_type=pathlib.Path),
    default=None,
    help="Results directory (default: results/<workflow name>/).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes of the local Dask cluster; 0 fits in this process "
    "(default: the workflow's execution.workers).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="Address of an existing Dask scheduler to run the fits on instead of a "
    "local cluster (default: the workflow's execution.scheduler).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Refit everything; by default fits already saved with the same data and "
    "settings are kept.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def run(
    workflow_file: pathlib.Path,
    output: pathlib.Path | None,
    workers: int | None,
    scheduler: str | None,
    force: bool,
    no_progress: bool,
) -> None:
    """Fit every subject of WORKFLOW_FILE with every model, and write the report.

    Rerunning an interrupted workflow skips the fits already finished with the
    same data and settings.
    """
    from bayesude.batch import run_workflow

    workflow = _or_exit(load_workflow, workflow_file)
    output = output or pathlib.Path("results") / workflow.name
    summary = _or_exit(
        run_workflow,
        workflow,
        output,
        workers=workers,
        scheduler=scheduler,
        force=force,
        progress_bar=not no_progress,
    )
    converged = int(summary["converged"].fillna(False).astype(bool).sum())
    click.echo(
        f"{converged} of {len(summary)} fits converged. Results in {output}/: "
        f"fits/, summary.csv, summary.json, report.html."
    )


@main.command()
@click.argument("workflow_file", type=click.Path(path_type=pathlib.Path))
@click.option(
    "--output",
    type=click.Path(path_type=pathlib.Path),
    default=None,
    help="Results directory holding the workflow's fits "
    "(default: results/<workflow name>/).",
)
@click.option("--workers", type=click.IntRange(min=0), default=None)
def discover(
    workflow_file: pathlib.Path, output: pathlib.Path | None, workers: int | None
) -> None:
    """Rerun only the discovery stage of WORKFLOW_FILE on its saved fits."""
    from bayesude.symbolic.pipeline import rerun_discovery

    workflow = _or_exit(load_workflow, workflow_file)
    output = output or pathlib.Path("results") / workflow.name
    _or_exit(rerun_discovery, workflow, output, workers)
    click.echo(f"Discovery records in {output}/discovery/; report rewritten.")


@main.command()
@click.argument("results_dir", type=click.Path(path_type=pathlib.Path))
def report(results_dir: pathlib.Path) -> None:
    """Rebuild summary.csv, summary.json and report.html from RESULTS_DIR/fits."""
    from bayesude.batch import rebuild_report

    path = _or_exit(rebuild_report, results_dir)
    click.echo(f"Wrote {path}.")


def _or_exit(function, *args, **kwargs):
    """Call ``function``; bad input ends the command with a message, not a traceback."""
    try:
        return function(*args, **kwargs)
    except (FileNotFoundError, ValueError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
