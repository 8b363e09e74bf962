"""Figures of the report, each returned as a base64-encoded PNG.

Every function takes the fits of one subject (``{model: InferenceData}``) or
one fit, draws with matplotlib's object-oriented API (no global pyplot state, so
it is safe in worker threads), and returns ``(png_base64 or None, note)``: the
note says why a figure is missing or what it leaves out. Model and parameter
names are user text; callers draw inside :func:`literal_text` so that a ``$``
in them is drawn, not parsed as mathtext.
"""

from __future__ import annotations

import base64
import io
import math

import arviz as az
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayesude import predictive_checks
from bayesude.functions import network_output_draws
from bayesude.predictive_checks import (
    observation_kind,
    observed_variable,
    predictive_bands,
)

FIGURE_DPI = 80
MAX_SWEEPS_SHOWN = 8
MAX_VECTOR_ELEMENTS_SHOWN = 10
NUM_FIGURE_COLUMNS = 4
NETWORK_WEIGHTS_SUFFIX = "_weights"
SAMPLE_DIMS = ("chain", "draw")


def literal_text():
    """Matplotlib settings under which user text is drawn as it is."""
    return matplotlib.rc_context({"text.parse_math": False, "font.size": 8})


def _indices_by_sweep(observed) -> dict[int, np.ndarray]:
    sweeps = np.asarray(observed["sweep"].values)
    times = np.asarray(observed["time"].values, dtype=float)
    return {
        int(s): np.flatnonzero(sweeps == s)[np.argsort(times[sweeps == s])]
        for s in np.unique(sweeps)
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
        for name in idata.observed_data.data_vars:
            if str(name) not in observations:
                observations[str(name)] = observed_variable(idata, str(name))
    return observations


def _observed_by_sweep(observed) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    times = np.asarray(observed["time"].values, dtype=float)
    values = np.asarray(observed.values, dtype=float)
    return {
        sweep: (times[order], values[order])
        for sweep, order in _indices_by_sweep(observed).items()
    }


def _bands_or_empty(idata: az.InferenceData, variable: str) -> dict:
    try:
        return predictive_bands(idata, variable)
    except ValueError:
        return {}


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


def predictive_figure(fits: dict[str, az.InferenceData]) -> tuple[str | None, str]:
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
    for row, name in enumerate(observations):
        bands = {m: _bands_or_empty(i, name) for m, i in fits.items()}
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


def density_figure(fits: dict[str, az.InferenceData]) -> tuple[str | None, str]:
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


def residual_figure(fits: dict[str, az.InferenceData]) -> tuple[str | None, str]:
    """Residuals (observed minus predictive median) over time, per observed variable.

    Shown for continuous traces and rates; one row per variable, one column per
    model, sweeps in colour.
    """
    observations = [
        n for n in _observations(fits) if _kind(fits, n) in ("continuous", "rate")
    ]
    tables = {
        (variable, model): _residuals_or_none(idata, variable)
        for variable in observations
        for model, idata in fits.items()
    }
    tables = {key: table for key, table in tables.items() if table is not None}
    if not tables:
        return None, "No posterior predictive draws to compute residuals from."
    models = list(fits)
    figure = Figure(
        figsize=(3.2 * len(models) + 0.6, 1.8 * len(observations) + 0.4),
        layout="constrained",
    )
    grid = figure.subplots(
        len(observations), len(models), squeeze=False, sharex=True, sharey="row"
    )
    notes = []
    for row, variable in enumerate(observations):
        for column, model in enumerate(models):
            axes = grid[row, column]
            table = tables.get((variable, model))
            axes.axhline(0.0, color="0.5", lw=0.8)
            axes.set_title(f"{variable} · {model}")
            if table is None:
                continue
            for sweep, rows in table.groupby("sweep"):
                axes.plot(
                    rows["time"], rows["residual"], lw=0.7, label=f"sweep {sweep}"
                )
            notes.append(
                f"{variable}, {model}: {table['inside_90'].mean():.0%} of observations "
                "inside their 90% predictive interval"
            )
    grid[0, -1].legend(fontsize=6, frameon=False)
    for axes in grid[-1]:
        axes.set_xlabel(_axis_label("time", _time_units(fits)))
    return _encode_png(figure), "; ".join(notes) + "." if notes else ""


def network_figure(fits: dict[str, az.InferenceData]) -> tuple[str | None, str]:
    """Each network's output over its fitted input range: median and 90% band per chain.

    Chains are drawn separately, so chains that found different functions show
    as separate bands; permuted weights that give the same function overlap.
    Networks with more than one input are shown along their first input only,
    at the grid's first values of the others, and only their first output.
    """
    panels = []
    for model, idata in fits.items():
        if not any(str(n).endswith(NETWORK_WEIGHTS_SUFFIX) for n in idata.posterior):
            continue
        try:
            outputs = network_output_draws(idata)
        except (ValueError, KeyError) as error:
            return None, f"Network outputs of {model} not evaluated: {error}"
        panels += [(model, term, values) for term, values in outputs.items()]
    if not panels:
        return None, ""
    figure = Figure(figsize=(3.2 * len(panels) + 0.4, 2.2), layout="constrained")
    grid = figure.subplots(1, len(panels), squeeze=False)
    for axes, (model, term, values) in zip(grid[0], panels):
        _plot_network(axes, term, values)
        axes.set_title(f"{term} · {model}")
    grid[0, -1].legend(fontsize=6, frameon=False)
    return _encode_png(figure), ""


def _plot_network(axes, term: str, values) -> None:
    point = f"{term}_point"
    first_input = next(name for name in values.coords if values[name].dims == (point,))
    x = values[first_input].values
    along = np.ones_like(x, dtype=bool)
    others = [
        n for n in values.coords if values[n].dims == (point,) and n != first_input
    ]
    for name in others:
        along &= values[name].values == values[name].values[0]
    output = values.isel({f"{term}_output": 0}).values[..., along]
    for chain in range(output.shape[0]):
        low, median, high = np.quantile(output[chain], [0.05, 0.5, 0.95], axis=0)
        colour = f"C{chain % 10}"
        axes.fill_between(x[along], low, high, color=colour, alpha=0.2, lw=0)
        axes.plot(x[along], median, color=colour, lw=1, label=f"chain {chain}")
    axes.set_xlabel(first_input)
    axes.set_ylabel("network output")


def feature_figures(fits: dict[str, az.InferenceData]) -> list[dict]:
    """Spike-train and rate features: one ``{title, image, note}`` per figure."""
    figures = []
    for variable in _observations(fits):
        kind = _kind(fits, variable)
        if kind == "spike_count":
            figures += _spike_figures(fits, variable)
        elif kind == "rate":
            image, note = _spectrum_figure(fits, variable)
            figures.append(
                {"title": f"Power spectrum of {variable}", "image": image, "note": note}
            )
    return figures


def _kind(fits, variable: str) -> str:
    for idata in fits.values():
        if "observed_data" in idata.groups() and variable in idata.observed_data:
            return observation_kind(idata, variable)
    return "continuous"


def _residuals_or_none(idata, variable):
    try:
        return predictive_checks.residuals(idata, variable)
    except ValueError:
        return None


def _time_units(fits) -> str:
    return str(next(iter(fits.values())).posterior.attrs.get("time_units", ""))


def _per_model(fits, variable, function):
    """``{model: function(idata, variable)}`` for the fits where it applies."""
    results, notes = {}, []
    for model, idata in fits.items():
        try:
            results[model] = function(idata, variable)
        except ValueError as error:
            notes.append(f"{model}: {error}")
    return results, notes


def _spike_figures(fits, variable: str) -> list[dict]:
    colours = _model_colours(list(fits))
    counts, notes = _per_model(fits, variable, predictive_checks.spike_count_check)
    figure = Figure(figsize=(9.0, 2.4), layout="constrained")
    count_axes, rate_axes, isi_axes = figure.subplots(1, 3)
    for index, (model, table) in enumerate(counts.items()):
        x = table["sweep"].to_numpy() + 0.15 * index
        count_axes.errorbar(
            x,
            table["q50"],
            yerr=[table["q50"] - table["q05"], table["q95"] - table["q50"]],
            fmt="o",
            ms=3,
            color=colours[model],
            label=model,
        )
    if counts:
        first = next(iter(counts.values()))
        count_axes.plot(
            first["sweep"], first["observed"], "k_", ms=12, label="observed"
        )
    count_axes.set(xlabel="sweep", ylabel="spike count", title="counts per sweep")
    count_axes.legend(fontsize=6, frameon=False)

    curves, curve_notes = _per_model(
        fits, variable, predictive_checks.firing_rate_curve
    )
    for model, table in curves.items():
        rate_axes.fill_between(
            table["stimulus"],
            table["rate_q05"],
            table["rate_q95"],
            color=colours[model],
            alpha=0.25,
            lw=0,
        )
        rate_axes.plot(table["stimulus"], table["rate_q50"], color=colours[model])
    if curves:
        first = next(iter(curves.values()))
        rate_axes.plot(first["stimulus"], first["observed_rate"], "ko", ms=3)
    rate_axes.set(xlabel="stimulus", ylabel="rate (spikes / time unit)", title="F–I")
    notes += curve_notes[:1]

    intervals, _ = _per_model(fits, variable, predictive_checks.interspike_intervals)
    for model, isi in intervals.items():
        if isi["predicted"].size:
            isi_axes.hist(
                isi["predicted"],
                bins=30,
                density=True,
                histtype="step",
                color=colours[model],
                label=model,
            )
    if intervals:
        observed = next(iter(intervals.values()))["observed"]
        if observed.size:
            isi_axes.hist(
                observed,
                bins=30,
                density=True,
                color="0.6",
                alpha=0.6,
                label="observed",
            )
    isi_axes.set(
        xlabel=_axis_label("interval", _time_units(fits)), title="inter-spike intervals"
    )
    isi_axes.set_yticks([])
    return [
        {
            "title": f"Spike counts, F–I curve and inter-spike intervals of {variable}",
            "image": _encode_png(figure),
            "note": "; ".join(notes),
        }
    ]


def _spectrum_figure(fits, variable: str) -> tuple[str | None, str]:
    spectra, notes = _per_model(fits, variable, predictive_checks.power_spectra)
    if not spectra:
        return None, "; ".join(notes)
    colours = _model_colours(list(fits))
    figure = Figure(figsize=(4.5, 2.6), layout="constrained")
    axes = figure.subplots()
    for model, spectrum in spectra.items():
        frequency = spectrum["frequency"].values[1:]
        axes.fill_between(
            frequency,
            spectrum["q05"].values[1:],
            spectrum["q95"].values[1:],
            color=colours[model],
            alpha=0.25,
            lw=0,
        )
        axes.plot(
            frequency, spectrum["q50"].values[1:], color=colours[model], label=model
        )
    first = next(iter(spectra.values()))
    axes.plot(
        first["frequency"].values[1:],
        first["observed"].values[1:],
        "k",
        lw=1,
        label="observed",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set(xlabel=f"frequency (1/{_time_units(fits) or 'time unit'})", ylabel="power")
    axes.legend(fontsize=6, frameon=False)
    return _encode_png(figure), "; ".join(notes)
