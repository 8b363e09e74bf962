r"""Mechanistic models whose replaced terms are written-down expressions.

A discovered model is a library model with one or more of its replaceable terms
replaced by an explicit expression, typically the sparse expression found by
:mod:`bayesude.symbolic` from a neural term's posterior. Its name says it all,
so a specification that names it is still plain, serialisable data::

    fitzhugh_nagumo[cubic_nonlinearity = c_v*v + c_v3*v**3]
    lotka_volterra[predation = p_xy*x*y; predator_growth = g_xy*x*y]

Inside the brackets, each ``term = expression`` replaces the base model's
replaceable term ``term``. The expression is read by SymPy; its free symbols are
the term's own arguments (``v``; ``x``, ``y``) and coefficients, every other
name. The coefficients become parameters of the model (default prior
Normal(0, 1), dimensionless units; a specification's ``priors`` override it),
and the base parameters used only by a replaced term leave the model. The
expression may use ``exp``, ``log``, ``tanh``, ``sqrt``, ``sin``, ``cos`` and
``Abs``; it is compiled to JAX, so the model is safe under ``jit`` and ``grad``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from tokenize import TokenError

import sympy
from jax import Array

from bayesude.core.mechanistic import MechanisticModel, Parameter, ReplaceableTerm
from bayesude.core.priors import prior

#: Functions an expression may call; every other name is a symbol.
EXPRESSION_FUNCTIONS = {
    "exp": sympy.exp,
    "log": sympy.log,
    "tanh": sympy.tanh,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "Abs": sympy.Abs,
}

#: Default prior of a coefficient that a specification gives no prior.
COEFFICIENT_PRIOR = prior("Normal", loc=0.0, scale=1.0)

_NAME_PATTERN = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[(.*)\]\s*$", re.DOTALL)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def parse_expression(text: str) -> sympy.Expr:
    """Read ``text`` with SymPy, every name a plain symbol except known functions.

    SymPy would otherwise read ``beta``, ``gamma`` or ``I`` as special functions
    or constants, which are parameter names in this library's models.
    """
    names = {
        name: sympy.Symbol(name)
        for name in _IDENTIFIER.findall(text)
        if name not in EXPRESSION_FUNCTIONS
    }
    try:
        return sympy.parse_expr(text, local_dict={**names, **EXPRESSION_FUNCTIONS})
    except (
        SyntaxError,
        TypeError,
        ValueError,
        TokenError,
        sympy.SympifyError,
    ) as error:
        raise ValueError(
            f"Cannot read the expression {text!r}: {error}. Write it in Python "
            f"syntax, e.g. c_v*v + c_v3*v**3."
        ) from None


def format_discovered_name(base: str, expressions: Mapping[str, sympy.Expr]) -> str:
    """The model name of ``base`` with ``{term: expression}`` replacing its terms."""
    inside = "; ".join(
        f"{term} = {sympy.sstr(expression)}" for term, expression in expressions.items()
    )
    return f"{base}[{inside}]"


@dataclasses.dataclass(frozen=True)
class _CompiledTerm:
    """One replaced term: its expression, coefficients and JAX function."""

    expression: sympy.Expr
    arguments: tuple[str, ...]
    coefficients: tuple[str, ...]
    function: object


class DiscoveredModel(MechanisticModel):
    """A library model with some replaceable terms given as explicit expressions.

    Build one with :func:`discovered_model`; see the module docstring for the
    name format.
    """

    def __init__(self, name: str, base: MechanisticModel, terms: dict) -> None:
        self.name = name
        self.base = base
        self.compiled: dict[str, _CompiledTerm] = terms
        self.states = base.states
        self.state_units = base.state_units
        self.inputs = base.inputs
        self.input_units = base.input_units
        self.time_units = base.time_units

        dropped = {
            name for term in terms for name in base.replaceable_term(term).parameters
        }
        coefficients = [c for t in terms.values() for c in t.coefficients]
        self.parameters = tuple(
            p for p in base.parameters if p.name not in dropped
        ) + tuple(
            Parameter(c, COEFFICIENT_PRIOR, "1", "coefficient of a discovered term")
            for c in coefficients
        )
        self.replaceable_terms = tuple(
            ReplaceableTerm(
                t.name,
                t.arguments,
                terms[t.name].coefficients,
                f"{t.name} = {sympy.sstr(terms[t.name].expression)}",
            )
            if t.name in terms
            else t
            for t in base.replaceable_terms
        )

    def default_terms(self, params: Mapping[str, Array]) -> dict:
        terms = {
            t.name: _bind_base_term(self.base, t.name, params)
            for t in self.base.replaceable_terms
            if t.name not in self.compiled
        }
        for name, compiled in self.compiled.items():
            terms[name] = _bind_expression(compiled, params)
        return terms

    def vector_field(self, t, state, params, inputs, terms):
        return self.base.vector_field(t, state, params, inputs, terms)

    def initial_unobserved_state(self, observed_initial, params, terms):
        return self.base.initial_unobserved_state(observed_initial, params, terms)


def _bind_base_term(base: MechanisticModel, name: str, params):
    method = getattr(base, f"term_{name}")
    return lambda *arguments: method(params, *arguments)


def _bind_expression(compiled: _CompiledTerm, params):
    def term(*arguments: Array) -> Array:
        coefficients = [params[name] for name in compiled.coefficients]
        return compiled.function(*arguments, *coefficients)

    return term


@functools.lru_cache(maxsize=64)
def discovered_model(name: str) -> DiscoveredModel:
    """The discovered model called ``name``, e.g. ``"fitzhugh_nagumo[f = c*v]"``.

    Raises
    ------
    ValueError
        The name is not of the form ``base[term = expression; ...]``, the base
        model or a term does not exist, or an expression is unreadable or uses
        a name that clashes with a parameter of the base model.
    """
    from bayesude.models import mechanistic_model

    match = _NAME_PATTERN.match(name)
    if match is None:
        raise ValueError(
            f"{name!r} is not a discovered model name; write "
            f"base_model[term = expression; ...], e.g. "
            f"fitzhugh_nagumo[cubic_nonlinearity = c_v*v + c_v3*v**3]."
        )
    base = mechanistic_model(match.group(1))
    terms = {}
    for part in filter(str.strip, match.group(2).split(";")):
        term_name, separator, text = part.partition("=")
        term_name = term_name.strip()
        if not separator:
            raise ValueError(f"{name!r}: {part.strip()!r} must read term = expression.")
        terms[term_name] = _compile_term(base, term_name, text.strip(), name)
    if not terms:
        raise ValueError(f"{name!r} replaces no term; name at least one.")
    coefficients = [c for t in terms.values() for c in t.coefficients]
    if len(set(coefficients)) != len(coefficients):
        raise ValueError(
            f"{name!r}: two replaced terms share a coefficient name; give each "
            f"term its own coefficients."
        )
    return DiscoveredModel(name, base, terms)


def _compile_term(
    base: MechanisticModel, term_name: str, text: str, name: str
) -> _CompiledTerm:
    signature = base.replaceable_term(term_name)
    expression = parse_expression(text)
    symbols = sorted(str(s) for s in expression.free_symbols)
    coefficients = tuple(s for s in symbols if s not in signature.arguments)
    clashes = sorted(
        set(coefficients) & ({p.name for p in base.parameters} | set(base.states))
    )
    if clashes:
        raise ValueError(
            f"{name!r}: the expression of {term_name} uses {clashes}, which are "
            f"parameters or states of {base.name} but not arguments of the term "
            f"{signature.arguments}; rename those coefficients."
        )
    arguments = [sympy.Symbol(a) for a in signature.arguments]
    function = sympy.lambdify(
        arguments + [sympy.Symbol(c) for c in coefficients], expression, modules="jax"
    )
    return _CompiledTerm(expression, signature.arguments, coefficients, function)
