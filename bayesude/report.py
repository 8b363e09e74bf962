"""A self-contained HTML report on a set of fits.

The report is one file: figures are embedded as base64 PNG and the style sheet
is inline, so it opens offline and can be mailed or archived as it is. Work is
split in two steps: :func:`report_context` turns fits and their summary table
into plain data (strings, numbers, encoded figures), and :func:`render_report`
fills the ``templates/report.html`` template with it. :func:`write_report`
does both and writes the file.
"""

import base64
import io
import math
import pathlib

import arviz as az
import jinja2
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayesude.diagnostics import compare_models
from bayesude.files import atomic_path

__all__ = ["render_report", "report_context", "write_report"]

REPORT_FILENAME = "report.html"
FIGURE_DPI = 80
MAX_SWEEPS_SHOWN = 8
MAX_VECTOR_ELEMENTS_SHOWN = 10
NUM_FIGURE_COLUMNS = 4
# Quantiles of the posterior predictive: 90% band, 50% band and median.
BAND_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
NETWORK_WEIGHTS_SUFFIX = "_weights"
SAMPLE_DIMS = ("chain", "draw")

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
        ``title``, ``overview`` (one dict of formatted cells per summary row)
        and ``subjects`` (one dict per subject with its figures as base64 PNG
        strings and its model comparison).

    Raises
    ------
    ValueError
        If ``summary`` lacks a needed column or two fits share a subject and
        model.
    """
    _check_summary_columns(summary)
    fits_by_subject = _fits_by_subject(idatas)
    return {
        "title": title,
        "overview": [_overview_row(row) for row in summary.to_dict("records")],
        "subjects": [
            _subject_section(subject, fits) for subject, fits in fits_by_subject.items()
        ],
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


# Overview table ------------------------------------------------------------


def _format_number(value, digits: int) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _format_elpd(elpd: float, se: float) -> str:
    if not math.isfinite(elpd):
        return "–"
    return f"{elpd:.1f} ± {se:.1f}"


def _status(row: dict) -> str:
    if not row["converged"]:
        return "not-converged"
    return "check" if row["problems"] else "ok"


def _overview_row(row: dict) -> dict:
    return {
        "subject": str(row["subject"]),
        "model": str(row["model"]),
        "status": _status(row),
        "converged": "yes" if row["converged"] else "no",
        "max_rhat": _format_number(row["max_rhat"], 3),
        "min_ess_bulk": _format_number(row["min_ess_bulk"], 0),
        "min_ess_tail": _format_number(row["min_ess_tail"], 0),
        "divergences": str(int(row["divergences"])),
        "solver_failures": str(int(row["solver_failures"])),
        "elpd_loo": _format_elpd(row["elpd_loo"], row["elpd_loo_se"]),
        "wall_time": _format_number(row["wall_time_s"], 0),
        "problems": str(row["problems"]),
    }


# Per-subject sections ------------------------------------------------------


def _subject_section(subject: str, fits: dict[str, az.InferenceData]) -> dict:
    # Model and parameter names are user text: drawn as mathtext, a "$" in
    # them could raise or change what is shown.
    with matplotlib.rc_context({"text.parse_math": False, "font.size": 8}):
        traces, traces_note = _predictive_figure(fits)
        densities, densities_note = _density_figure(fits)
    return {
        "name": subject,
        "models": list(fits),
        "traces": traces,
        "traces_note": traces_note,
        "densities": densities,
        "densities_note": densities_note,
        "comparison": _comparison(fits),
    }


def _encode_png(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    # A Figure made without pyplot is not registered anywhere; clearing it
    # releases its artists now rather than at garbage collection.
    figure.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _model_colours(models: list[str]) -> dict[str, str]:
    return {model: f"C{index % 10}" for index, model in enumerate(models)}


def _observations(fits: dict[str, az.InferenceData]) -> dict[str, object]:
    """Each observed variable, taken from the first fit that stores it."""
    observations = {}
    for idata in fits.values():
        if "observed_data" not in idata.groups():
            continue
        for name, values in idata.observed_data.data_vars.items():
            observations.setdefault(str(name), values)
    return observations


def _indices_by_sweep(observed) -> dict[int, np.ndarray]:
    """Observation indices of each sweep, in time order."""
    sweeps = np.asarray(observed["sweep"].values)
    times = np.asarray(observed["time"].values, dtype=float)
    indices = {}
    for sweep in np.unique(sweeps):
        selected = np.flatnonzero(sweeps == sweep)
        indices[int(sweep)] = selected[np.argsort(times[selected])]
    return indices


def _observed_by_sweep(observed) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    times = np.asarray(observed["time"].values, dtype=float)
    values = np.asarray(observed.values, dtype=float)
    return {
        sweep: (times[order], values[order])
        for sweep, order in _indices_by_sweep(observed).items()
    }


def _predictive_bands(idata: az.InferenceData, variable: str, observed) -> dict:
    """Posterior predictive quantiles per sweep: ``{sweep: (time, quantiles)}``.

    Uses the noise-free trajectories of the ``predictions`` group when present,
    else the posterior predictive at the observations.
    """
    if "predictions" in idata.groups() and variable in idata.predictions:
        trajectories = idata.predictions[variable]
        quantiles = trajectories.quantile(BAND_QUANTILES, dim=list(SAMPLE_DIMS))
        times = np.asarray(trajectories["time"].values, dtype=float)
        return {
            int(sweep): (times, quantiles.sel(sweep=sweep).values)
            for sweep in trajectories["sweep"].values
        }
    has_draws = "posterior_predictive" in idata.groups()
    if not has_draws or variable not in idata.posterior_predictive:
        return {}
    draws = idata.posterior_predictive[variable]
    quantiles = draws.quantile(BAND_QUANTILES, dim=list(SAMPLE_DIMS)).values
    times = np.asarray(observed["time"].values, dtype=float)
    return {
        sweep: (times[order], quantiles[:, order])
        for sweep, order in _indices_by_sweep(observed).items()
    }


def _plot_bands(axes, time, quantiles, colour: str, label: str) -> None:
    axes.fill_between(time, quantiles[0], quantiles[4], color=colour, alpha=0.2, lw=0)
    axes.fill_between(time, quantiles[1], quantiles[3], color=colour, alpha=0.35, lw=0)
    axes.plot(time, quantiles[2], color=colour, lw=1, label=label)


def _plot_sweep(axes, sweep: int, observed_by_sweep, bands, colours) -> None:
    for model, bands_by_sweep in bands.items():
        if sweep in bands_by_sweep:
            _plot_bands(axes, *bands_by_sweep[sweep], colours[model], model)
    if sweep in observed_by_sweep:
        time, values = observed_by_sweep[sweep]
        axes.plot(time, values, ".", color="k", ms=2, label="observed")
    axes.set_title(f"sweep {sweep}")


def _axis_label(name: str, units: str) -> str:
    return f"{name} ({units})" if units else name


def _label_outer_axes(grid, observations: dict, time_units: str) -> None:
    for axes, (name, observed) in zip(grid[:, 0], observations.items()):
        axes.set_ylabel(_axis_label(name, observed.attrs.get("units", "")))
    for axes in grid[-1]:
        axes.set_xlabel(_axis_label("time", time_units))


def _predictive_figure(fits: dict[str, az.InferenceData]) -> tuple[str | None, str]:
    observations = _observations(fits)
    if not observations:
        return None, "No observed data stored with these fits."
    observed_by_sweep = {n: _observed_by_sweep(o) for n, o in observations.items()}
    all_sweeps = sorted({s for by in observed_by_sweep.values() for s in by})
    sweeps = all_sweeps[:MAX_SWEEPS_SHOWN]

    figure = Figure(
        figsize=(2.6 * len(sweeps) + 0.6, 2.0 * len(observations) + 0.4),
        layout="constrained",
    )
    grid = figure.subplots(len(observations), len(sweeps), squeeze=False, sharex=True)
    colours = _model_colours(list(fits))
    for row, (name, observed) in enumerate(observations.items()):
        bands = {m: _predictive_bands(i, name, observed) for m, i in fits.items()}
        for axes, sweep in zip(grid[row], sweeps):
            _plot_sweep(axes, sweep, observed_by_sweep[name], bands, colours)
    time_units = next(iter(fits.values())).posterior.attrs.get("time_units", "")
    _label_outer_axes(grid, observations, str(time_units))
    grid[0, -1].legend(fontsize=7, frameon=False)

    note = ""
    if len(all_sweeps) > len(sweeps):
        note = f"Showing the first {len(sweeps)} of {len(all_sweeps)} sweeps."
    return _encode_png(figure), note


def _parameter_kinds(
    fits: dict[str, az.InferenceData],
) -> tuple[list[str], list[str]]:
    """Names of scalar and of vector mechanistic parameters, in first-seen order."""
    scalars: list[str] = []
    vectors: list[str] = []
    for idata in fits.values():
        for name, values in idata.posterior.data_vars.items():
            name = str(name)
            if name.endswith(NETWORK_WEIGHTS_SUFFIX) or name in scalars + vectors:
                continue
            if values.ndim == 2:
                scalars.append(name)
            elif values.ndim == 3:
                vectors.append(name)
    return scalars, vectors


def _plot_density(axes, draws: np.ndarray, colour: str, label: str) -> None:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return
    if np.ptp(draws) == 0:
        axes.axvline(draws[0], color=colour, lw=1, label=label)
        return
    grid, density = az.kde(draws)
    axes.plot(grid, density, color=colour, lw=1, label=label)


def _density_panels(fits, scalars, vectors) -> list[tuple[str, list]]:
    """One ``(title, [(draws, colour, label), ...])`` per panel."""
    colours = _model_colours(list(fits))
    panels = []
    for name in scalars:
        lines = [
            (idata.posterior[name].values.ravel(), colours[model], model)
            for model, idata in fits.items()
            if name in idata.posterior
        ]
        panels.append((name, lines))
    for name in vectors:
        for model, idata in fits.items():
            if name not in idata.posterior:
                continue
            lines = _element_lines(idata.posterior[name])
            panels.append((f"{name} · {model}", lines))
    return panels


def _element_lines(values) -> list[tuple]:
    """One density line per element of a ``(chain, draw, element)`` parameter."""
    element_dim = next(dim for dim in values.dims if dim not in SAMPLE_DIMS)
    labels = values[element_dim].values
    # A sequential colour map, so elements are not mistaken for models.
    shades = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, len(labels)))
    return [
        (values.isel({element_dim: i}).values.ravel(), shade, f"{element_dim} {label}")
        for i, (label, shade) in enumerate(zip(labels, shades))
    ]


def _num_elements(posterior, name: str) -> int:
    sizes = posterior[name].sizes
    return math.prod(size for dim, size in sizes.items() if dim not in SAMPLE_DIMS)


def _vectors_too_long(fits, vectors: list[str]) -> list[str]:
    return [
        name
        for name in vectors
        if any(
            _num_elements(idata.posterior, name) > MAX_VECTOR_ELEMENTS_SHOWN
            for idata in fits.values()
            if name in idata.posterior
        )
    ]


def _density_figure(fits: dict[str, az.InferenceData]) -> tuple[str | None, str]:
    scalars, vectors = _parameter_kinds(fits)
    too_long = _vectors_too_long(fits, vectors)
    panels = _density_panels(fits, scalars, [n for n in vectors if n not in too_long])
    note = ""
    if too_long:
        note = (
            f"Not shown, having more than {MAX_VECTOR_ELEMENTS_SHOWN} elements: "
            f"{', '.join(too_long)}."
        )
    if not panels:
        return None, note or "No mechanistic parameters to show."

    num_columns = min(NUM_FIGURE_COLUMNS, len(panels))
    num_rows = math.ceil(len(panels) / num_columns)
    figure = Figure(
        figsize=(2.4 * num_columns, 1.8 * num_rows + 0.3), layout="constrained"
    )
    grid = figure.subplots(num_rows, num_columns, squeeze=False)
    for axes, (title, lines) in zip(grid.ravel(), panels):
        for draws, colour, label in lines:
            _plot_density(axes, draws, colour, label)
        axes.set_title(title)
        axes.set_yticks([])
        axes.legend(fontsize=6, frameon=False)
    for axes in grid.ravel()[len(panels) :]:
        axes.set_visible(False)
    return _encode_png(figure), note


# Model comparison -----------------------------------------------------------


def _comparison(fits: dict[str, az.InferenceData]) -> dict:
    """Comparison rows and a sentence, or the reason there is none."""
    if len(fits) < 2:
        return {
            "rows": [],
            "sentence": "Only one model was fitted to this subject, so there is "
            "nothing to compare.",
        }
    try:
        table = compare_models(fits)
    except ValueError as error:
        return {"rows": [], "sentence": f"Models not compared: {error}"}
    return {"rows": _comparison_rows(table), "sentence": _preference_sentence(table)}


def _comparison_rows(table: pd.DataFrame) -> list[dict]:
    return [
        {
            "model": str(model),
            "rank": str(int(row["rank"])),
            "elpd_loo": _format_elpd(row["elpd_loo"], row["se"]),
            "p_loo": _format_number(row["p_loo"], 1),
            "elpd_diff": _format_elpd(row["elpd_diff"], row["dse"]),
            "weight": _format_number(row["weight"], 2),
            "warning": "yes" if row["warning"] else "no",
        }
        for model, row in table.iterrows()
    ]


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
