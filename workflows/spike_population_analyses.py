"""Run the population and encoding workflows on the real data, then analyse the fits.

Usage: ``python workflows/spike_population_analyses.py RESULTS_DIR``. Writes
``RESULTS_DIR/<workflow>/`` (fits, summary, report, as ``bayesude run`` does)
and ``RESULTS_DIR/analyses.json``: leave-future-out scores, posterior
predictive burst statistics and spectra peaks of the population fits, and the
decoding accuracy of the encoding fits against a ridge decoder.
"""

import json
import pathlib
import sys

import numpy as np

import bayesude  # noqa: F401  (float64)
from bayesude.batch import run_workflow
from bayesude.decoding import (
    decode_stimulus,
    decoding_accuracy,
    load_spike_counts_with_stimulus,
    ridge_decoder,
)
from bayesude.population import (
    leave_future_out,
    load_population_counts,
    predictive_statistics,
)
from bayesude.results import load_fit
from bayesude.workflow import load_workflow

HERE = pathlib.Path(__file__).parent
DATA = HERE.parent / "data"


def _run_unless_done(workflow, results: pathlib.Path) -> None:
    """Fit the workflow unless its results folder already has a summary."""
    if not (results / workflow.name / "summary.csv").exists():
        run_workflow(workflow, results / workflow.name, workers=0, progress_bar=False)


def population(results: pathlib.Path) -> dict:
    workflow = load_workflow(HERE / "hippocampal_population.yaml")
    _run_unless_done(workflow, results)
    entry = workflow.settings.data.subjects["hippocampus_16units"]
    whole = load_population_counts(
        DATA / "population" / "rodent_hippocampus_population_rate_10ms.nc",
        window_s=(0.0, entry.window_s[1] + 15.0),
        bin_s=entry.bin_s,
    )
    counts = whole["population_count"].values[0]
    threshold = 2.0 * max(np.median(counts), 1.0)
    analyses = {}
    for name, spec in workflow.specifications.items():
        path = results / workflow.name / "fits" / f"hippocampus_16units__{name}.nc"
        if not path.exists():
            analyses[name] = {"error": "fit failed; see summary.csv"}
            continue
        idata = load_fit(path)
        stats = predictive_statistics(
            idata,
            "population_count",
            threshold=threshold,
            dt_s=entry.bin_s,
            segment_s=10.0,
        )
        frequency = stats["frequency"].values
        summary = {
            "leave_future_out": leave_future_out(spec, idata, whole, max_draws=100)
        }
        for stat in ("burst_rate_hz", "mean_burst_s", "mean_silence_s"):
            predicted = stats[f"predicted_{stat}"].values
            summary[stat] = {
                "observed": float(stats[f"observed_{stat}"]),
                "predicted_median": float(np.nanmedian(predicted)),
                "predicted_90": np.nanquantile(predicted, [0.05, 0.95]).tolist(),
            }
        summary["spectrum_peak_hz"] = {
            "observed": float(frequency[np.argmax(stats["observed_spectrum"].values)]),
            "predicted_median": float(
                np.median(frequency[np.argmax(stats["predicted_spectrum"].values, 1)])
            ),
        }
        summary["threshold_count"] = float(threshold)
        analyses[name] = summary
    return analyses


def encoding(results: pathlib.Path) -> dict:
    workflow = load_workflow(HERE / "locust_encoding.yaml")
    _run_unless_done(workflow, results)
    entry = workflow.settings.data.subjects["locust_receptor_1"]
    path = DATA / "spike_trains" / "locust_auditory_receptor_nitime.nc"
    train = load_spike_counts_with_stimulus(path, 1, tuple(entry.window_s), entry.bin_s)
    held_out = load_spike_counts_with_stimulus(path, 1, (8.0, 9.0), entry.bin_s)
    truth = held_out["stimulus"].values[0]
    train_stimulus = train["stimulus"].values[0]
    ridge = ridge_decoder(
        train["spike_count"].values[0],
        train_stimulus,
        held_out["spike_count"].values[0],
        lags=10,
    )
    analyses = {
        "ridge": {
            **decoding_accuracy(truth, ridge.prediction),
            "alpha": ridge.alpha,
            "lags": ridge.lags,
        }
    }
    for name, spec in workflow.specifications.items():
        fit_path = results / workflow.name / "fits" / f"locust_receptor_1__{name}.nc"
        if not fit_path.exists():
            analyses[name] = {"error": "fit failed; see summary.csv"}
            continue
        decoded = decode_stimulus(
            spec,
            load_fit(fit_path),
            held_out,
            stimulus_prior=(float(train_stimulus.mean()), float(train_stimulus.std())),
            knot_spacing=2,
            num_encoding_draws=4,
            num_samples_per_draw=100,
            svi_steps=800,
        )
        analyses[name] = decoding_accuracy(truth, decoded.mean, samples=decoded.samples)
    return analyses


if __name__ == "__main__":
    results = pathlib.Path(sys.argv[1])
    results.mkdir(parents=True, exist_ok=True)
    which = sys.argv[2:] or ["encoding", "population"]
    analyses = {}
    for part in which:
        analyses[part] = {"encoding": encoding, "population": population}[part](results)
        (results / f"analyses_{part}.json").write_text(
            json.dumps(analyses[part], indent=2)
        )
    print(json.dumps(analyses, indent=2))
