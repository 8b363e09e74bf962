"""Symbolic recovery of learned terms: libraries, regression, discovered models."""

import jax.numpy as jnp
import numpy as np
import pytest
import sympy
import xarray as xr

import bayesude
from bayesude.models import mechanistic_model
from bayesude.symbolic import (
    LearnedTerm,
    discover_term,
    discovered_specification,
    mechanistic_form,
    polynomial_library,
    sensitivity_table,
)
from bayesude.symbolic.forecast import split_time, training_data, with_training_ranges
from bayesude.symbolic.regression import discovery_priors, sparse_regression

NUM_DRAWS = 300


def cubic_draws(seed=0, function_noise=0.02, num_points=150):
    """Posterior-like draws of f(v) = v - v^3/3 over the range a limit cycle visits.

    Each draw has its own coefficients (posterior spread) and a smooth wiggle
    of size ``function_noise`` (what a network adds between the data).
    """
    rng = np.random.default_rng(seed)
    v = np.sort(rng.uniform(-2.0, 2.0, num_points))
    linear = 1.0 + 0.03 * rng.standard_normal(NUM_DRAWS)
    cubic = -1.0 / 3.0 + 0.01 * rng.standard_normal(NUM_DRAWS)
    phase = rng.uniform(0, 2 * np.pi, NUM_DRAWS)
    wiggle = function_noise * np.sin(3.0 * v[None, :] + phase[:, None])
    outputs = linear[:, None] * v + cubic[:, None] * v**3 + wiggle
    return LearnedTerm("cubic_nonlinearity", "cubic_network", {"v": v}, outputs)


def test_polynomial_library_lists_monomials_lowest_degree_first():
    assert polynomial_library(("v",), 3).labels == ("const", "v", "v2", "v3")
    assert polynomial_library(("x", "y"), 2, include_constant=False).labels == (
        "x",
        "y",
        "x2",
        "x_y",
        "y2",
    )


def test_library_evaluates_candidates_at_points():
    library = polynomial_library(("x", "y"), 2).plus({"holling": "x/(1 + x)"})
    features = library.evaluate({"x": np.array([1.0, 2.0]), "y": np.array([3.0, 5.0])})
    expected = np.array(
        [[1, 1, 3, 1, 3, 9, 0.5], [1, 2, 5, 4, 10, 25, 2.0 / 3.0]], dtype=float
    )
    np.testing.assert_allclose(features, expected)


def test_library_rejects_a_candidate_in_a_name_that_is_not_an_argument():
    with pytest.raises(ValueError, match=r"uses \['w'\], which are not arguments"):
        polynomial_library(("v",), 2).plus({"vw": "v*w"})


def test_mechanistic_form_is_the_models_own_term():
    label, expression = mechanistic_form(
        mechanistic_model("fitzhugh_nagumo"), "cubic_nonlinearity"
    )
    v = sympy.Symbol("v")
    assert label == "cubic_nonlinearity_form"
    assert sympy.simplify(expression - (v - v**3 / 3)) == 0


def test_sparse_regression_recovers_exact_coefficients_without_noise():
    v = np.linspace(-2.0, 2.0, 50)
    features = polynomial_library(("v",), 5).evaluate({"v": v})
    outputs = (0.5 - 2.0 * v**2 + 0.1 * v**5)[None, :]
    coefficients, explained = sparse_regression(outputs, features, threshold=0.05)
    np.testing.assert_allclose(coefficients[0], [0.5, 0, -2.0, 0, 0, 0.1], atol=1e-10)
    assert explained[0] == pytest.approx(1.0)


def test_cubic_term_is_selected_with_high_inclusion_and_nothing_spurious():
    """Degree 5: the draws' wiggle (4% of the term) projects onto v^5, so 0.3."""
    discovery = discover_term(cubic_draws(), polynomial_library(("v",), 5), 0.3)
    probability = dict(zip(discovery.library.labels, discovery.inclusion_probability))
    assert discovery.selected == ("v", "v3")
    assert probability["v"] == 1.0 and probability["v3"] >= 0.95
    for absent in ("const", "v2", "v4", "v5"):
        assert probability[absent] <= 0.05, (absent, probability[absent])
    estimates = discovery.coefficient_estimates()
    assert estimates["v"] == pytest.approx(1.0, abs=0.03)
    assert estimates["v3"] == pytest.approx(-1.0 / 3.0, abs=0.01)


def test_coefficient_interval_covers_the_truth_and_excludes_zero():
    table = discover_term(cubic_draws(), polynomial_library(("v",), 3), 0.05).table()
    rows = table.set_index("candidate")
    for label, truth in (("v", 1.0), ("v3", -1.0 / 3.0)):
        low, high = rows.loc[label, ["coefficient_low", "coefficient_high"]]
        assert low <= truth <= high and not low <= 0.0 <= high
    assert rows.loc["v2", "coefficient_low"] == rows.loc["v2", "coefficient_high"] == 0


def test_absent_term_keeps_low_inclusion_probability_when_draws_are_noisy():
    """A wigglier posterior (5% of the term's size) still leaves v^2 out."""
    learned = cubic_draws(seed=1, function_noise=0.05)
    discovery = discover_term(learned, polynomial_library(("v",), 3), 0.1)
    probability = dict(zip(discovery.library.labels, discovery.inclusion_probability))
    assert probability["v2"] <= 0.1
    assert probability["const"] <= 0.1


def test_sensitivity_table_has_one_row_per_library_and_threshold():
    learned = cubic_draws()
    libraries = [polynomial_library(("v",), 3), polynomial_library(("v",), 5)]
    table = sensitivity_table(learned, libraries, [0.0, 0.05, 0.2])
    assert list(table["library"]) == ["poly3"] * 3 + ["poly5"] * 3
    by_row = table.set_index(["library", "threshold"])["selected"]
    assert by_row[("poly3", 0.05)] == "v + v3"
    assert by_row[("poly5", 0.2)] == "v + v3"
    # Without a threshold every candidate is kept: the table shows why one is needed.
    assert by_row[("poly5", 0.0)] == "const + v + v2 + v3 + v4 + v5"


def test_discovered_model_replaces_the_term_by_its_expression():
    model = mechanistic_model("fitzhugh_nagumo[cubic_nonlinearity = c_v*v + c_v3*v**3]")
    assert [p.name for p in model.parameters] == [
        "a",
        "b",
        "tau",
        "I_ext",
        "c_v",
        "c_v3",
    ]
    params = {"a": 0.7, "b": 0.8, "tau": 12.5, "I_ext": 0.5, "c_v": 1.0, "c_v3": -1 / 3}
    terms = model.default_terms(params)
    state = {"v": jnp.asarray(2.0), "w": jnp.asarray(1.0)}
    derivatives = model.vector_field(0.0, state, params, {}, terms)
    assert float(derivatives["v"]) == pytest.approx(2.0 - 8.0 / 3.0 - 1.0 + 0.5)
    assert float(derivatives["w"]) == pytest.approx((2.0 + 0.7 - 0.8) / 12.5)


def test_discovered_model_drops_the_parameters_of_the_replaced_term():
    model = mechanistic_model("lotka_volterra[predation = p_xy*x*y]")
    assert [p.name for p in model.parameters] == ["alpha", "gamma", "delta", "p_xy"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fitzhugh_nagumo[cubic = c*v]", "has no replaceable term 'cubic'"),
        ("fitzhugh_nagumo[cubic_nonlinearity c*v]", "must read term = expression"),
        ("fitzhugh_nagumo[cubic_nonlinearity = a*v]", r"uses \['a'\], which are"),
        ("fitzhugh_nagumo[cubic_nonlinearity = c*(v]", "Cannot read the expression"),
    ],
)
def test_discovered_model_names_are_checked(name, message):
    with pytest.raises(ValueError, match=message):
        mechanistic_model(name)


def test_discovered_specification_centres_priors_on_the_discovered_values():
    ude = bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v", "w": "w"},
        fixed={"I_ext": 0.5},
        neural_terms=(
            bayesude.NeuralTerm("cubic_network", replaces="cubic_nonlinearity"),
        ),
    )
    discovery = discover_term(cubic_draws(), polynomial_library(("v",), 3), 0.1)
    spec = discovered_specification(ude, {"cubic_nonlinearity": discovery})
    assert spec.mechanistic == (
        "fitzhugh_nagumo[cubic_nonlinearity = cubic_nonlinearity_v*v + "
        "cubic_nonlinearity_v3*v**3]"
    )
    assert spec.neural_terms == ()
    assert spec.fixed == {"I_ext": 0.5}
    priors = discovery_priors(discovery)
    assert priors["cubic_nonlinearity_v3"]["loc"] == pytest.approx(-1 / 3, abs=0.01)
    names = [p.name for p in spec.free_parameters()]
    assert names == ["a", "b", "tau", "cubic_nonlinearity_v", "cubic_nonlinearity_v3"]
    assert spec.free_parameters()[-1].prior.distribution == "Normal"


def test_training_window_fixes_network_input_ranges_to_the_training_data():
    times = np.arange(0.0, 10.0, 1.0)
    values = np.linspace(0.0, 9.0, times.size)[None]
    data = xr.Dataset(
        {"v": (("sweep", "time"), values, {"units": "1", "role": "observed"})},
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )
    until = split_time(data, 0.6)
    assert until == 5.0
    train = training_data(data, until)
    assert train.sizes["time"] == 6
    spec = bayesude.ModelSpecification(
        mechanistic=None,
        states=("v",),
        observed={"v": "v"},
        neural_terms=(bayesude.NeuralTerm("net", adds_to=("v",)),),
    )
    fixed = with_training_ranges(spec, train)
    assert dict(fixed.neural_terms[0].input_ranges) == {"v": (0.0, 5.0)}
    with pytest.raises(ValueError, match="forecast_fraction 0.95 leaves 10 of 10"):
        split_time(data, 0.95)


WORKFLOW = """
name: discovery_check
data:
  loader: netcdf
  subjects:
    fhn: {{file: {file}}}
models:
  mechanistic:
    mechanistic: fitzhugh_nagumo
    observed: {{v: v, w: w}}
  ude:
    mechanistic: fitzhugh_nagumo
    observed: {{v: v, w: w}}
    neural_terms: [{{name: cubic_network, replaces: cubic_nonlinearity}}]
    discovery: {discovery}
"""


def _write_workflow(tmp_path, discovery):
    data = tmp_path / "fhn.nc"
    fitzhugh_nagumo_recording(np.arange(0.0, 5.0, 0.5), noise=0.05).to_netcdf(data)
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW.format(file=data, discovery=discovery))
    return path


def fitzhugh_nagumo_recording(times, noise, seed=0):
    from scipy.integrate import solve_ivp

    def vector_field(t, y):
        return [y[0] - y[0] ** 3 / 3 - y[1] + 0.5, (y[0] + 0.7 - 0.8 * y[1]) / 12.5]

    solution = solve_ivp(
        vector_field, (times[0], times[-1]), (-1.0, 1.0), t_eval=times, rtol=1e-10
    )
    observed = solution.y + noise * np.random.default_rng(seed).standard_normal(
        solution.y.shape
    )
    return xr.Dataset(
        {
            name: (
                ("sweep", "time"),
                observed[i][None],
                {"units": "1", "role": "observed"},
            )
            for i, name in enumerate(("v", "w"))
        },
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )


def test_workflow_discovery_section_is_validated_with_its_model(tmp_path):
    from bayesude.workflow import load_workflow

    good = "{terms: {cubic_nonlinearity: {degree: 3}}, compare_with: mechanistic}"
    workflow = load_workflow(_write_workflow(tmp_path, good))
    assert workflow.discovery["ude"].terms["cubic_nonlinearity"].degree == 3
    assert workflow.discovery["ude"].threshold == 0.05

    with pytest.raises(ValueError, match="'cubic' is not replaced by a network"):
        load_workflow(_write_workflow(tmp_path, "{terms: {cubic: {}}}"))
    with pytest.raises(ValueError, match="compare_with names 'passive'"):
        load_workflow(
            _write_workflow(
                tmp_path, "{terms: {cubic_nonlinearity: {}}, compare_with: passive}"
            )
        )
    with pytest.raises(ValueError, match=r"discovery: terms.cubic_nonlinearity.deg"):
        load_workflow(
            _write_workflow(tmp_path, "{terms: {cubic_nonlinearity: {deg: 3}}}")
        )


# The full loop with NUTS: a UDE learns f(v) from synthetic data (noise SD 0.05,
# both states observed, the applied drive known), the regression of its posterior
# recovers v - v^3/3, and the refitted discovered model covers the truth.
FHN_TRUTH = {"a": 0.7, "b": 0.8, "tau": 12.5}
FHN_NOISE = 0.05


@pytest.fixture(scope="module")
def fhn_data():
    return fitzhugh_nagumo_recording(np.arange(0.0, 40.01, 0.5), FHN_NOISE)


@pytest.mark.slow
def test_fitzhugh_nagumo_ude_posterior_recovers_the_cubic_term(fhn_data):
    spec = bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v", "w": "w"},
        fixed={"I_ext": 0.5},
        neural_terms=(
            bayesude.NeuralTerm(
                "cubic_network", replaces="cubic_nonlinearity", width=8
            ),
        ),
    )
    idata = bayesude.fit(
        spec,
        fhn_data,
        num_chains=2,
        num_warmup=200,
        num_samples=200,
        init="map",
        svi_steps=3000,
        svi_learning_rate=0.02,
        max_tree_depth=6,
        seed=0,
        progress_bar=False,
    )
    from bayesude.symbolic import learned_term

    learned = learned_term(idata, fhn_data, "cubic_nonlinearity")
    discovery = discover_term(learned, polynomial_library(("v",), 3), 0.1)
    probability = dict(zip(discovery.library.labels, discovery.inclusion_probability))
    assert discovery.selected == ("v", "v3")
    assert probability["v3"] >= 0.9
    assert probability["const"] <= 0.2 and probability["v2"] <= 0.2


@pytest.mark.slow
def test_refitted_discovered_model_covers_the_truth(fhn_data):
    ude = bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v", "w": "w"},
        fixed={"I_ext": 0.5},
        neural_terms=(
            bayesude.NeuralTerm("cubic_network", replaces="cubic_nonlinearity"),
        ),
    )
    discovery = discover_term(cubic_draws(), polynomial_library(("v",), 3), 0.1)
    spec = discovered_specification(ude, {"cubic_nonlinearity": discovery})
    idata = bayesude.fit(
        spec,
        fhn_data,
        num_chains=2,
        num_warmup=300,
        num_samples=300,
        init="map",
        svi_steps=1000,
        seed=1,
        progress_bar=False,
    )
    truth = {
        **FHN_TRUTH,
        "cubic_nonlinearity_v": 1.0,
        "cubic_nonlinearity_v3": -1.0 / 3.0,
    }
    for name, value in truth.items():
        low, high = np.quantile(idata.posterior[name].values, [0.025, 0.975])
        assert low <= value <= high, (name, low, high)


def test_report_section_shows_inclusion_probabilities_and_forecast(tmp_path):
    import json

    import jinja2

    from bayesude.symbolic.report_section import discovery_context

    discovery = discover_term(cubic_draws(), polynomial_library(("v",), 3), 0.1)
    record = {
        "subject": "fhn",
        "model": "ude",
        "threshold": 0.1,
        "inclusion": json.loads(discovery.table().to_json(orient="records")),
        "sensitivity": [],
        "median_r2": {"cubic_nonlinearity": 0.999},
        "discovered_model": "fitzhugh_nagumo[cubic_nonlinearity = c_v*v]",
        "training_until": 30.0,
        "leave_future_out": [
            {
                "model": "ude",
                "elpd_lfo": -12.5,
                "elpd_lfo_se": 2.0,
                "num_scored": 20,
                "failed_draws": 0,
            },
            {"model": "ude_discovered", "elpd_lfo": None, "problem": "no fit"},
        ],
    }
    (tmp_path / "discovery").mkdir()
    (tmp_path / "discovery" / "fhn__ude.json").write_text(json.dumps(record))
    (section,) = discovery_context(tmp_path)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("bayesude", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = environment.get_template("discovery_section.html").render(discovery=section)
    assert "fitzhugh_nagumo[cubic_nonlinearity = c_v*v]" in html
    assert "<td>1.00</td>" in html  # inclusion probability of v
    assert "-12.5 ± 2" in html and "– ± –" in html
