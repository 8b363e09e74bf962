"""Run the population and encoding workflows on the real data, then analyse the fits.

Usage: ``python workflows/spike_population_analyses.py RESULTS_DIR [PART...]
[--quick]`` with PART ``encoding`` or ``population`` (default both);
``--quick`` fits shorter windows with fewer optimisation steps. Writes
``RESULTS_DIR/<workflow>/`` (fits, summary, report, as ``bayesude run`` does)
and ``RESULTS_DIR/analyses.json``: leave-future-out scores, posterior
predictive burst statistics and spectra peaks of the population fits, and the
decoding accuracy of the encoding fits against a ridge decoder.
"""

import json
import pathlib
import sys

import numpy as np
import yaml

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


#: Settings of the quick runs: shorter windows, coarser bins, fewer steps.
QUICK = {
    "hippocampal_population": {"window_s": [0, 12], "bin_s": 0.1},
    "locust_encoding": {"window_s": [0, 2]},
}


def _workflow(name: str, results: pathlib.Path, quick: bool):
    """The workflow file, or for a quick run a reduced copy in ``results``."""
    path = HERE / f"{name}.yaml"
    if not quick:
        return load_workflow(path)
    settings = yaml.safe_load(path.read_text())
    for entry in settings["data"]["subjects"].values():
        entry["file"] = str((HERE / entry["file"]).resolve())
        entry.update(QUICK[name])
    settings["inference"].update(svi_steps=400, num_samples=200)
    copy = results / f"{name}_quick.yaml"
    copy.write_text(yaml.safe_dump(settings))
    return load_workflow(copy)


def _run_unless_done(workflow, results: pathlib.Path) -> None:
    """Fit the workflow unless its results folder already has a summary."""
    if not (results / workflow.name / "summary.csv").exists():
        run_workflow(workflow, results / workflow.name, workers=0, progress_bar=False)


def population(results: pathlib.Path, quick: bool) -> dict:
    workflow = _workflow("hippocampal_population", results, quick)
    _run_unless_done(workflow, results)
    entry = workflow.settings.data.subjects["hippocampus_16units"]
    whole = load_population_counts(
        DATA / "population" / "rodent_hippocampus_population_rate_10ms.nc",
        window_s=(0.0, 1.5 * entry.window_s[1]),
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


def encoding(results: pathlib.Path, quick: bool) -> dict:
    workflow = _workflow("locust_encoding", results, quick)
    _run_unless_done(workflow, results)
    entry = workflow.settings.data.subjects["locust_receptor_1"]
    path = DATA / "spike_trains" / "locust_auditory_receptor_nitime.nc"
    train = load_spike_counts_with_stimulus(path, 1, tuple(entry.window_s), entry.bin_s)
    held_out_s = (8.0, 8.5 if quick else 9.0)
    held_out = load_spike_counts_with_stimulus(path, 1, held_out_s, entry.bin_s)
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
            num_encoding_draws=2 if quick else 4,
            num_samples_per_draw=100,
            svi_steps=300 if quick else 800,
        )
        analyses[name] = decoding_accuracy(truth, decoded.mean, samples=decoded.samples)
    return analyses


if __name__ == "__main__":
    results = pathlib.Path(sys.argv[1])
    results.mkdir(parents=True, exist_ok=True)
    quick = "--quick" in sys.argv
    which = [a for a in sys.argv[2:] if a != "--quick"] or ["encoding", "population"]
    analyses = {}
    for part in which:
        run = {"encoding": encoding, "population": population}[part]
        analyses[part] = run(results, quick)
        (results / f"analyses_{part}.json").write_text(
            json.dumps(analyses[part], indent=2)
        )
    print(json.dumps(analyses, indent=2))
