"""Model specifications: the whole spectrum of models, and clear errors for bad ones."""

import jax.numpy as jnp
import numpy as np
import pytest

import bayesude
from bayesude.models import MODEL_LIBRARY, mechanistic_model


def test_specification_round_trips_through_plain_data():
    spec = bayesude.ModelSpecification(
        mechanistic="slow_current_membrane",
        observed={"voltage": "V"},
        neural_terms=(bayesude.NeuralTerm("net", replaces="slow_activation", width=4),),
        priors={"tau_m": bayesude.prior("LogNormal", loc=3.0, scale=0.5)},
        fixed={"E_L": -70.0},
    )
    again = bayesude.specification_from_dict(spec.as_dict(), "test")
    assert again.as_dict() == spec.as_dict()


def test_replacing_a_term_drops_the_parameters_only_it_used():
    spec = bayesude.ModelSpecification(
        mechanistic="slow_current_membrane",
        observed={"voltage": "V"},
        neural_terms=(bayesude.NeuralTerm("net", replaces="slow_activation"),),
    )
    names = {p.name for p in spec.free_parameters()}
    assert names == {"tau_m", "E_L", "R_in", "tau_w"}


def test_fully_neural_model_must_name_its_states():
    with pytest.raises(ValueError, match="must name its states"):
        bayesude.ModelSpecification(mechanistic=None, observed={"x": "x"})


def test_unknown_model_term_and_state_are_named_in_errors():
    with pytest.raises(ValueError, match="Unknown mechanistic model 'hodgkin'"):
        bayesude.ModelSpecification(mechanistic="hodgkin", observed={"voltage": "V"})
    with pytest.raises(
        ValueError, match="no replaceable term 'cubic'.*slow_activation"
    ):
        bayesude.ModelSpecification(
            mechanistic="slow_current_membrane",
            observed={"voltage": "V"},
            neural_terms=(bayesude.NeuralTerm("net", replaces="cubic"),),
        )
    with pytest.raises(ValueError, match="mapped to state 'U'"):
        bayesude.ModelSpecification(
            mechanistic="passive_membrane", observed={"voltage": "U"}
        )


def test_unknown_field_in_a_model_description_is_reported_with_its_place():
    with pytest.raises(
        ValueError, match="cells.yaml: models.passive: unknown field.*'obsreved'"
    ):
        bayesude.specification_from_dict(
            {"mechanistic": "passive_membrane", "obsreved": {"voltage": "V"}},
            "cells.yaml: models.passive",
        )


def test_every_library_model_documents_units_and_priors():
    for name in MODEL_LIBRARY:
        model = mechanistic_model(name)
        assert model.__doc__
        for parameter in model.parameters:
            assert parameter.units and parameter.description
            assert np.isfinite(parameter.prior.to_numpyro().mean)


def test_fitzhugh_nagumo_vector_field_matches_its_equations():
    model = mechanistic_model("fitzhugh_nagumo")
    params = {"a": 0.7, "b": 0.8, "tau": 12.5, "I_ext": 0.5}
    derivative = model.vector_field(
        0.0,
        {"v": jnp.array(1.0), "w": jnp.array(0.5)},
        params,
        {},
        model.default_terms(params),
    )
    assert float(derivative["v"]) == pytest.approx(1.0 - 1.0 / 3.0 - 0.5 + 0.5)
    assert float(derivative["w"]) == pytest.approx((1.0 + 0.7 - 0.8 * 0.5) / 12.5)


def test_slow_current_is_zero_at_rest_whatever_the_activation():
    model = mechanistic_model("slow_current_membrane")
    params = {
        "tau_m": 20.0,
        "E_L": -70.0,
        "R_in": 100.0,
        "tau_w": 50.0,
        "g_w": 5.0,
        "V_half": -80.0,
        "k_w": 8.0,
    }
    terms = {"slow_activation": lambda v: jnp.sin(v) + 3.0}
    derivative = model.vector_field(
        0.0,
        {"V": jnp.array(-70.0), "w": jnp.array(0.0)},
        params,
        {"current": 0.0},
        terms,
    )
    assert float(derivative["V"]) == 0.0 and float(derivative["w"]) == 0.0
