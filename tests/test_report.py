import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from synthetic_fits import make_fit

from bayesude.cli import main
from bayesude.diagnostics import summarise_fits
from bayesude.report import report_context, write_report, write_summary_files
from bayesude.results import save_fit

MALICIOUS_SUBJECT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def fits():
    return [
        make_fit(subject="cell_1", model_name="leaky"),
        make_fit(
            subject="cell_1",
            model_name="leaky_nn",
            seed=1,
            with_predictions=False,
        ),
        make_fit(
            subject=MALICIOUS_SUBJECT,
            model_name="leaky",
            seed=2,
            tau_m_chain_offsets_ms=[0.0, 0.0, 4.0, 4.0],
        ),
    ]


@pytest.fixture(scope="module")
def report_html(fits, tmp_path_factory):
    results_dir = tmp_path_factory.mktemp("results")
    path = write_report(results_dir, fits, summarise_fits(fits), "Leak <b>fits</b>")
    return path.read_text(encoding="utf-8")


def test_report_is_written_as_report_html_without_leftover_temporary_files(
    fits, tmp_path
):
    path = write_report(tmp_path / "new", fits[:1], summarise_fits(fits[:1]), "Fits")

    assert path == tmp_path / "new" / "report.html"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_rewriting_a_report_replaces_the_old_one(fits, tmp_path):
    write_report(tmp_path, fits[:1], summarise_fits(fits[:1]), "First title")
    path = write_report(tmp_path, fits[:1], summarise_fits(fits[:1]), "Second title")

    html = path.read_text(encoding="utf-8")
    assert "Second title" in html
    assert "First title" not in html


def test_report_is_self_contained(report_html):
    assert 'src="http' not in report_html
    assert "http://" not in report_html
    assert "https://" not in report_html
    assert "<link" not in report_html
    assert "data:image/png;base64," in report_html


def test_report_embeds_trace_residual_and_density_figures_for_every_subject(
    report_html,
):
    # Two subjects, each with traces, residuals over time and densities.
    assert report_html.count("data:image/png;base64,") == 6
    assert report_html.count("<h3>Residuals over time</h3>") == 2


def test_overview_comes_first_then_details_subjects_and_comparison_methods(
    report_html,
):
    positions = [
        report_html.index(heading)
        for heading in (
            '<h2 id="overview">Overview</h2>',
            '<h2 id="convergence">Convergence details</h2>',
            '<h2 id="subject-cell-1">Subject cell_1</h2>',
            "Which question each comparison answers",
        )
    ]
    assert positions == sorted(positions)


def test_report_says_loo_measures_interpolation_and_points_to_leave_future_out(
    report_html,
):
    assert "estimate interpolation skill" in report_html
    assert "leave-future-out" in report_html
    assert "Model comparison (interpolation: PSIS-LOO and WAIC)" in report_html
    assert "elpd_waic" in report_html


def test_subject_names_and_titles_are_escaped(report_html):
    assert MALICIOUS_SUBJECT not in report_html
    assert "<script" not in report_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report_html
    assert "Leak &lt;b&gt;fits&lt;/b&gt;" in report_html


def _overview_row_of(html: str, subject_html: str) -> str:
    overview = html[
        html.index('<h2 id="overview">') : html.index('<h2 id="convergence">')
    ]
    rows = re.findall(r"<tr class=\"[^\"]*\">.*?</tr>", overview, flags=re.DOTALL)
    matching = [row for row in rows if subject_html in row]
    assert len(matching) == 1
    return matching[0]


def test_non_converged_fit_is_flagged_with_its_problems(report_html):
    row = _overview_row_of(report_html, "&lt;script&gt;alert(1)&lt;/script&gt;")

    assert 'class="not-converged"' in row
    assert "no" in row
    assert "R-hat &gt; 1.01 on tau_m" in row


def test_converged_fits_are_not_flagged(report_html):
    # Each fit has a row in the overview and one in the convergence details.
    assert report_html.count('<tr class="ok">') == 4
    assert report_html.count('<tr class="not-converged">') == 2


def test_comparison_names_the_preferred_model(report_html):
    assert "The preferred model is leaky" in report_html
    assert "twice its standard error" in report_html


def test_a_model_with_non_finite_log_likelihood_is_explained_not_fatal(tmp_path):
    fits = [
        make_fit(model_name="leaky"),
        make_fit(model_name="broken", non_finite_log_likelihood=True),
    ]

    html = write_report(tmp_path, fits, summarise_fits(fits), "Fits").read_text()

    assert "Models not compared: Model &#39;broken&#39;" in html
    assert "non-finite values (1 -inf, 0 NaN" in html


def test_model_names_with_mathtext_characters_are_drawn_literally(tmp_path):
    # Parsed as mathtext, "$x_$" is a syntax error that aborts drawing.
    fits = [make_fit(model_name="$x_$"), make_fit(model_name="plain", seed=1)]

    html = write_report(tmp_path, fits, summarise_fits(fits), "Fits").read_text()

    assert "$x_$" in html


def test_two_fits_of_the_same_subject_and_model_are_rejected():
    fits = [make_fit(num_draws=100), make_fit(num_draws=100, seed=1)]

    with pytest.raises(ValueError, match="share subject 'cell_1' and model 'leaky'"):
        report_context(fits, summarise_fits(fits), "Fits")


def test_summary_without_needed_columns_is_rejected(fits):
    summary = summarise_fits(fits).drop(columns=["problems"])

    with pytest.raises(ValueError, match="summarise_fits"):
        report_context(fits, summary, "Fits")


def test_summary_csv_and_json_hold_the_same_verdicts(fits, tmp_path):
    summary = summarise_fits(fits)

    csv_path, json_path = write_summary_files(tmp_path, summary)

    from_csv = pd.read_csv(csv_path)
    from_json = json.loads(json_path.read_text())["fits"]
    assert list(from_csv["converged"]) == [row["converged"] for row in from_json]
    assert list(from_csv["converged"]) == [True, True, False]
    assert list(from_csv["problems"].fillna("")) == [r["problems"] for r in from_json]
    assert from_json[2]["divergences_per_chain"] == [0, 0, 0, 0]
    assert from_csv["divergences_per_chain"][2] == "0 0 0 0"
    np.testing.assert_allclose(
        from_csv["max_rhat"], [row["max_rhat"] for row in from_json]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "summary.csv",
        "summary.json",
    ]


def test_a_failed_fit_row_is_flagged_in_the_report_and_summary_files(fits, tmp_path):
    summary = summarise_fits(fits[:1])
    failed = {name: np.nan for name in summary.columns}
    failed.update(
        subject="cell_9", model="leaky", converged=False, problems="fit failed: boom"
    )
    summary = pd.concat([summary, pd.DataFrame([failed])], ignore_index=True)

    html = write_report(tmp_path, fits[:1], summary, "Fits").read_text()
    _, json_path = write_summary_files(tmp_path, summary)

    row = _overview_row_of(html, "cell_9")
    assert 'class="not-converged"' in row and "fit failed: boom" in row
    assert json.loads(json_path.read_text())["fits"][1]["max_rhat"] is None


def test_report_command_rebuilds_report_and_summaries_from_saved_fits(fits, tmp_path):
    (tmp_path / "fits").mkdir()
    for index, fit in enumerate(fits[:2]):
        save_fit(fit, tmp_path / "fits" / f"fit_{index}.nc")

    result = CliRunner().invoke(main, ["report", str(tmp_path)])

    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    assert "Subject cell_1" in html
    summary = json.loads((tmp_path / "summary.json").read_text())["fits"]
    assert [row["model"] for row in summary] == ["leaky", "leaky_nn"]
