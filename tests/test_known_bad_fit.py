"""A fit known to be bad is flagged: an oscillator sampled after 5 warm-up steps.

With five warm-up steps NUTS has neither a step size nor a mass matrix adapted
to the FitzHugh–Nagumo posterior; chains stay where they started (one does not
move at all) and disagree.
"""

import re

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import solve_ivp

import bayesude
from bayesude.diagnostics import summarise_fits
from bayesude.report import write_report


def _oscillator_recording() -> xr.Dataset:
    """FitzHugh–Nagumo on its limit cycle (a=0.7, b=0.8, tau=12.5, I=0.5)."""

    def vector_field(t, y):
        v, w = y
        return [v - v**3 / 3 - w + 0.5, (v + 0.7 - 0.8 * w) / 12.5]

    # One and a half cycles (period about 37 time units).
    times = np.linspace(0.0, 60.0, 61)
    solution = solve_ivp(vector_field, (0.0, 60.0), [-1.0, 1.0], t_eval=times)
    v = solution.y[0] + 0.1 * np.random.default_rng(0).normal(size=times.size)
    return xr.Dataset(
        {"v": (("sweep", "time"), v[None], {"units": "1", "role": "observed"})},
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )


@pytest.fixture(scope="module")
def short_warmup_fit():
    spec = bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v"},
        initial_state={"w": 1.0},
        # Unadapted steps propose stiff parameters; a small step budget keeps
        # their (rejected) solves cheap.
        solver=bayesude.SolverSettings(max_steps=512),
    )
    return bayesude.fit(
        spec,
        _oscillator_recording(),
        num_chains=2,
        num_warmup=5,
        num_samples=60,
        max_tree_depth=3,
        seed=0,
        progress_bar=False,
        subject="oscillator",
        model_name="fitzhugh_nagumo",
    )


def test_too_few_warmup_steps_on_an_oscillator_are_flagged_in_the_report(
    short_warmup_fit, tmp_path
):
    summary = summarise_fits([short_warmup_fit])
    html = write_report(tmp_path, [short_warmup_fit], summary, "Oscillator").read_text()

    row = summary.iloc[0]
    assert not row["converged"]
    assert row["max_rhat"] > 1.1
    assert row["min_ess_bulk"] < 50
    overview = html[
        html.index('<h2 id="overview">') : html.index('<h2 id="convergence">')
    ]
    (flagged,) = re.findall(r'<tr class="not-converged">.*?</tr>', overview, re.DOTALL)
    assert "&#10007; no" in flagged
    assert "R-hat &gt; 1.01 on" in flagged
    assert "bulk ESS &lt; 400 on" in flagged
    assert '<span class="caveat">not converged</span>' in html
