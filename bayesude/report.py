"""A self-contained HTML report on a set of fits, and the summary files beside it.

The report is one file: figures are embedded as base64 PNG and the style sheet
is inline, so it opens offline and can be mailed or archived as it is. Work is
split in two steps: :func:`report_context` turns fits and their summary table
into plain data (strings, numbers, encoded figures), and :func:`render_report`
fills the ``templates/report.html`` template with it. :func:`write_report`
does both and writes the file; :func:`write_summary_files` writes the same
verdicts as ``summary.csv`` and ``summary.json``.

Order of the report: how to read it, the overview table (one row per subject
and model, every problem flagged), the convergence details (per-chain
statistics), one section per subject (verdicts, predictive checks, network
outputs, posterior densities, model comparison), then what each comparison
method answers.
"""

import json
import math
import pathlib

import arviz as az
import jinja2
import pandas as pd

from bayesude import figures
from bayesude.comparison import TIME_SERIES_NOTE, compare_models
from bayesude.diagnostics import (
    MIN_BFMI,
    MIN_ESS,
    RHAT_THRESHOLD,
    TRAJECTORY_RHAT_THRESHOLD,
    WEIGHTS_LABEL,
    summary_for_csv,
    summary_records,
)
from bayesude.files import atomic_path

__all__ = ["render_report", "report_context", "write_report", "write_summary_files"]

REPORT_FILENAME = "report.html"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"

_REQUIRED_SUMMARY_COLUMNS = (
    "subject",
    "model",
    "converged",
    "max_rhat",
    "min_ess_bulk",
    "min_ess_tail",
    "divergences",
    "solver_failures",
    "elpd_loo",
    "elpd_loo_se",
    "wall_time_s",
    "problems",
)


def write_summary_files(
    results_dir: pathlib.Path, summary: pd.DataFrame
) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``summary.csv`` and ``summary.json`` (the same rows) atomically.

    Per-chain lists are space-separated in the CSV and lists in the JSON;
    missing numbers are empty in the CSV and ``null`` in the JSON.
    """
    results_dir = pathlib.Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = results_dir / SUMMARY_CSV, results_dir / SUMMARY_JSON
    with atomic_path(csv_path) as temporary:
        summary_for_csv(summary).to_csv(temporary, index=False)
    with atomic_path(json_path) as temporary:
        temporary.write_text(
            json.dumps({"fits": summary_records(summary)}, indent=1),
            encoding="utf-8",
        )
    return csv_path, json_path


def write_report(
    results_dir: pathlib.Path,
    idatas: list[az.InferenceData],
    summary: pd.DataFrame,
    title: str,
) -> pathlib.Path:
    """Write ``report.html`` about a set of fits into ``results_dir``.

    Parameters
    ----------
    results_dir : pathlib.Path
        Folder for the report; created if missing. An existing
        ``report.html`` is replaced atomically, so a reader never sees a
        half-written file.
    idatas : list of arviz.InferenceData
        The fits, one per subject and model, in the layout of
        ``docs/conventions.md``.
    summary : pandas.DataFrame
        The table from :func:`bayesude.diagnostics.summarise_fits` for the
        same fits; its rows become the overview table, in their order.
    title : str
        Title of the report.

    Returns
    -------
    pathlib.Path
        Path of the written report.

    Raises
    ------
    ValueError
        If ``summary`` lacks a column the overview needs, or if two fits share
        a subject and model.
    """
    results_dir = pathlib.Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    context = report_context(idatas, summary, title)
    if (results_dir / "discovery").is_dir():
        from bayesude.symbolic.report_section import discovery_context

        context["discoveries"] = discovery_context(results_dir)
    html = render_report(context)
    path = results_dir / REPORT_FILENAME
    with atomic_path(path) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return path


def report_context(
    idatas: list[az.InferenceData], summary: pd.DataFrame, title: str
) -> dict:
    """Gather everything the report shows as plain data.

    Parameters
    ----------
    idatas : list of arviz.InferenceData
        The fits, one per subject and model.
    summary : pandas.DataFrame
        The table from :func:`bayesude.diagnostics.summarise_fits`.
    title : str
        Title of the report.

    Returns
    -------
    dict
        ``title``, ``thresholds``, ``overview`` (one dict of formatted cells
        per summary row), ``convergence`` (the per-chain statistics of each
        row), ``subjects`` (one dict per subject with its verdicts, figures as
        base64 PNG strings and its model comparison) and ``time_series_note``.

    Raises
    ------
    ValueError
        If ``summary`` lacks a needed column or two fits share a subject and
        model.
    """
    _check_summary_columns(summary)
    fits_by_subject = _fits_by_subject(idatas)
    records = summary.to_dict("records")
    return {
        "title": title,
        "thresholds": {
            "rhat": RHAT_THRESHOLD,
            "trajectory_rhat": TRAJECTORY_RHAT_THRESHOLD,
            "ess": MIN_ESS,
            "bfmi": MIN_BFMI,
            "weights_label": WEIGHTS_LABEL,
        },
        "overview": [_overview_row(row) for row in records],
        "convergence": [_convergence_row(row) for row in records],
        "subjects": [
            _subject_section(
                subject,
                fits,
                [r for r in records if str(r["subject"]) == subject],
            )
            for subject, fits in fits_by_subject.items()
        ],
        "time_series_note": TIME_SERIES_NOTE,
    }


def render_report(context: dict) -> str:
    """Fill the HTML template with a context from :func:`report_context`.

    Every string is HTML-escaped, so subject and model names cannot inject
    markup.
    """
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("bayesude", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(REPORT_FILENAME).render(**context)


def _check_summary_columns(summary: pd.DataFrame) -> None:
    missing = [name for name in _REQUIRED_SUMMARY_COLUMNS if name not in summary]
    if missing:
        raise ValueError(
            f"summary lacks the columns {missing}; pass the table returned by "
            "bayesude.diagnostics.summarise_fits for the same fits."
        )


def _fits_by_subject(
    idatas: list[az.InferenceData],
) -> dict[str, dict[str, az.InferenceData]]:
    """Group fits by subject, keeping the order in which subjects appear."""
    fits_by_subject: dict[str, dict[str, az.InferenceData]] = {}
    for idata in idatas:
        subject = str(idata.posterior.attrs.get("subject", ""))
        model = str(idata.posterior.attrs.get("model_name", ""))
        fits = fits_by_subject.setdefault(subject, {})
        if model in fits:
            raise ValueError(
                f"Two fits share subject {subject!r} and model {model!r}; pass "
                "one fit per subject and model."
            )
        fits[model] = idata
    return fits_by_subject


# Overview and convergence tables --------------------------------------------


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _format_number(value, digits: int) -> str:
    if _is_missing(value):
        return "–"
    return f"{float(value):.{digits}f}"


def _format_count(value) -> str:
    return "–" if _is_missing(value) else str(int(value))


def _format_elpd(elpd, se) -> str:
    if _is_missing(elpd):
        return "–"
    return f"{elpd:.1f} ± {se:.1f}"


def _format_list(values, digits: int | None = None) -> str:
    if not isinstance(values, list) or not values:
        return "–"
    if digits is None:
        return " ".join(str(value) for value in values)
    return " ".join(f"{value:.{digits}f}" for value in values)


def _format_findings(values) -> str:
    """A list of findings joined, or a dash (also for a failed fit's missing cell)."""
    return "; ".join(values) if isinstance(values, list) and values else "–"


def _status(row: dict) -> str:
    if not row["converged"] or _is_missing(row["converged"]):
        return "not-converged"
    return "check" if row["problems"] else "ok"


def _overview_row(row: dict) -> dict:
    return {
        "subject": str(row["subject"]),
        "model": str(row["model"]),
        "status": _status(row),
        "max_rhat": _format_number(row["max_rhat"], 3),
        "min_ess_bulk": _format_number(row["min_ess_bulk"], 0),
        "min_ess_tail": _format_number(row["min_ess_tail"], 0),
        "divergences": _format_count(row["divergences"]),
        "solver_failures": _format_count(row["solver_failures"]),
        "elpd_loo": _format_elpd(row["elpd_loo"], row["elpd_loo_se"]),
        "wall_time": _format_number(row["wall_time_s"], 0),
        "problems": [p for p in str(row["problems"]).split("; ") if p],
    }


def _convergence_row(row: dict) -> dict:
    """Every verdict statistic of one fit, formatted; absent columns show a dash."""

    def get(name):
        return row.get(name)

    saturation = get("tree_depth_saturation")
    return {
        "subject": str(row["subject"]),
        "model": str(row["model"]),
        "status": _status(row),
        "num_chains": _format_count(get("num_chains")),
        "num_draws": _format_count(get("num_draws")),
        "max_rhat": _format_number(get("max_rhat"), 3),
        "max_rhat_classic": _format_number(get("max_rhat_classic"), 3),
        "min_ess_bulk": _format_number(get("min_ess_bulk"), 0),
        "min_ess_tail": _format_number(get("min_ess_tail"), 0),
        "max_rhat_network_output": _format_number(get("max_rhat_network_output"), 3),
        "max_rhat_trajectories": _format_number(get("max_rhat_trajectories"), 3),
        "max_rhat_network_weights": _format_number(get("max_rhat_network_weights"), 2),
        "network_weights": str(get("network_weights") or ""),
        "divergences_per_chain": _format_list(get("divergences_per_chain")),
        "bfmi_per_chain": _format_list(get("bfmi_per_chain"), 2),
        "tree_depth_saturation": "–"
        if _is_missing(saturation)
        else f"{float(saturation):.0%}",
        "solver_failures_per_chain": _format_list(get("solver_failures_per_chain")),
        "warmup_solver_failures_per_chain": _format_list(
            get("warmup_solver_failures_per_chain")
        ),
        "stuck_chains": _format_findings(get("stuck_chains")),
        "duplicate_chains": _format_findings(get("duplicate_chains")),
    }


# Per-subject sections ------------------------------------------------------


def _subject_section(
    subject: str, fits: dict[str, az.InferenceData], rows: list[dict]
) -> dict:
    with figures.literal_text():
        traces, traces_note = figures.predictive_figure(fits)
        residuals, residuals_note = figures.residual_figure(fits)
        networks, networks_note = figures.network_figure(fits)
        features = figures.feature_figures(fits)
        densities, densities_note = figures.density_figure(fits)
    return {
        "name": subject,
        "anchor": f"subject-{_anchor(subject)}",
        "models": list(fits),
        "verdicts": [_overview_row(row) for row in rows],
        "traces": traces,
        "traces_note": traces_note,
        "residuals": residuals,
        "residuals_note": residuals_note,
        "networks": networks,
        "networks_note": networks_note,
        "features": features,
        "densities": densities,
        "densities_note": densities_note,
        "comparison": _comparison(fits, rows),
    }


def _anchor(text: str) -> str:
    """An id attribute value made of letters, digits and hyphens only."""
    return "".join(c if c.isalnum() else "-" for c in text) or "unnamed"


# Model comparison -----------------------------------------------------------


def _comparison(fits: dict[str, az.InferenceData], rows: list[dict]) -> dict:
    """LOO and WAIC tables and sentences, or the reason there are none."""
    empty = {"loo_rows": [], "waic_rows": []}
    if len(fits) < 2:
        return {
            **empty,
            "sentence": "Only one model was fitted to this subject, so there is "
            "nothing to compare.",
            "caveat": "",
        }
    try:
        loo = compare_models(fits, ic="loo")
        waic = compare_models(fits, ic="waic")
    except ValueError as error:
        return {**empty, "sentence": f"Models not compared: {error}", "caveat": ""}
    return {
        "loo_rows": _comparison_rows(loo, "loo"),
        "waic_rows": _comparison_rows(waic, "waic"),
        "sentence": _preference_sentence(loo),
        "caveat": _convergence_caveat(rows),
    }


def _comparison_rows(table: pd.DataFrame, ic: str) -> list[dict]:
    return [
        {
            "model": str(model),
            "rank": str(int(row["rank"])),
            "elpd": _format_elpd(row[f"elpd_{ic}"], row["se"]),
            "p": _format_number(row[f"p_{ic}"], 1),
            "elpd_diff": _format_elpd(row["elpd_diff"], row["dse"]),
            "weight": _format_number(row["weight"], 2),
            "warning": _warning_text(row, ic),
        }
        for model, row in table.iterrows()
    ]


def _warning_text(row, ic: str) -> str:
    if ic == "loo":
        count = int(row["num_high_pareto_k"])
        threshold = float(row["pareto_k_threshold"])
        return (
            f"{count} above {threshold:.2f}" if count else f"none above {threshold:.2f}"
        )
    return "yes" if row["warning"] else "none"


def _preference_sentence(table: pd.DataFrame) -> str:
    best, runner_up = str(table.index[0]), str(table.index[1])
    difference = float(table["elpd_diff"].iloc[1])
    standard_error = float(table["dse"].iloc[1])
    sentence = (
        f"The preferred model is {best}: its expected log predictive density "
        f"exceeds that of {runner_up} by {difference:.1f} (SE {standard_error:.1f}). "
    )
    if difference > 2 * standard_error:
        return sentence + "The difference is larger than twice its standard error."
    return sentence + (
        "The difference is not larger than twice its standard error, so the data "
        "do not clearly separate the two."
    )


def _convergence_caveat(rows: list[dict]) -> str:
    failed = [str(row["model"]) for row in rows if _status(row) == "not-converged"]
    if not failed:
        return ""
    return (
        f"Not converged: {', '.join(failed)}. Its elpd is computed from draws that "
        "do not represent the posterior, so this comparison is provisional."
    )
