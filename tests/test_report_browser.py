"""The report in a real browser: Debian's Chromium, headless, driven by Playwright.

Skipped with its reason when Chromium or Playwright is missing outside CI; in CI
(``CI`` set, as ``.ci/run`` does) a missing browser is a failure.
"""

import os
import shutil

import numpy as np
import pytest
from synthetic_fits import make_fit, with_observed_variable

from bayesude.diagnostics import summarise_fits
from bayesude.report import write_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _sync_playwright():
    """Playwright's entry point, or skip (fail in CI) saying what is missing."""
    missing = []
    if shutil.which("chromium") is None:
        missing.append("Debian's chromium (run `make chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        reason = f"The browser test needs {' and '.join(missing)}."
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


def _fits():
    rng = np.random.default_rng(0)
    base = make_fit(subject="cell <b>1</b>", model_name="leaky")
    chains, draws = base.posterior.sizes["chain"], base.posterior.sizes["draw"]
    # A population rate with a 20 ms rhythm, and spike counts in 1 ms bins.
    time = np.arange(256.0)
    rate = 5.0 + np.sin(2 * np.pi * 0.05 * time)
    with_rate = with_observed_variable(
        base,
        "population_rate",
        rate + 0.2 * rng.normal(size=time.size),
        rate + 0.2 * rng.normal(size=(chains, draws, time.size)),
        np.zeros(time.size, dtype=int),
        time,
        {"units": "Hz"},
    )
    counts = rng.poisson(0.05, size=time.size).astype(float)
    with_spikes = with_observed_variable(
        with_rate,
        "spikes",
        counts,
        rng.poisson(0.05, size=(chains, draws, time.size)).astype(float),
        np.zeros(time.size, dtype=int),
        time,
        {"observation_model": "poisson"},
    )
    return [
        with_spikes,
        make_fit(subject="cell_2", model_name="leaky", seed=1),
        make_fit(
            subject="cell_2",
            model_name="leaky_modes",
            seed=2,
            tau_m_chain_offsets_ms=[0.0, 0.0, 4.0, 4.0],
        ),
    ]


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    fits = _fits()
    directory = tmp_path_factory.mktemp("results")
    return write_report(directory, fits, summarise_fits(fits), "Cells <i>A</i>")


def test_report_renders_in_headless_chromium_with_figures_and_no_console_errors(
    report_path, tmp_path
):
    sync_playwright = _sync_playwright()
    errors, requests = [], []

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),
            executable_path=shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report_path.as_uri(), wait_until="load")
        figures = page.eval_on_selector_all(
            "img.figure",
            "images => images.map(i => ({complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight, "
            "shown: i.getBoundingClientRect().width, alt: i.alt}))",
        )
        num_scripts = page.eval_on_selector_all("script", "nodes => nodes.length")
        headings = page.eval_on_selector_all("h2", "nodes => nodes.map(n => n.id)")
        title = page.title()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        context.close()

    assert errors == []
    # Self-contained: nothing but the file itself and its inline images loads.
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    # Subject 1: traces, residuals, spike features, power spectrum, densities;
    # subject 2: traces, residuals, densities.
    assert len(figures) == 8
    for figure in figures:
        assert figure["complete"], figure["alt"]
        assert figure["width"] > 100 and figure["height"] > 50, figure["alt"]
        assert figure["shown"] > 0, figure["alt"]
    assert any("Power spectrum of population_rate" in f["alt"] for f in figures)
    assert any("F–I curve" in f["alt"] for f in figures)
    assert num_scripts == 0
    assert title == "Cells <i>A</i>"
    assert headings[:2] == ["overview", "convergence"]
    assert (tmp_path / "report.png").stat().st_size > 20_000
