"""Libraries of candidate functions for the sparse regression of a learned term.

A library is an ordered set of named candidate expressions in the arguments of
the replaced term (``v`` for FitzHugh–Nagumo's cubic, ``x``, ``y`` for the
Lotka–Volterra interactions). Candidates are SymPy expressions, so they can be
written in a workflow file, evaluated on NumPy arrays, and written into the
discovered model's name unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import sympy

from bayesude.core.mechanistic import MechanisticModel
from bayesude.models.discovered import parse_expression


@dataclasses.dataclass(frozen=True)
class CandidateLibrary:
    """Named candidate functions of a term's arguments.

    Parameters
    ----------
    arguments
        The term's arguments, in the order its function takes them.
    candidates
        ``(label, expression)`` pairs; a label is a short identifier
        (``"v3"``, ``"x_y"``) used in tables and coefficient names.
    name
        Name of the library in sensitivity tables (``"poly3"``).
    """

    arguments: tuple[str, ...]
    candidates: tuple[tuple[str, sympy.Expr], ...]
    name: str = "library"

    def __post_init__(self) -> None:
        labels = self.labels
        if len(set(labels)) != len(labels):
            raise ValueError(f"Library {self.name!r} has repeated labels {labels}.")
        for label, expression in self.candidates:
            unknown = {str(s) for s in expression.free_symbols} - set(self.arguments)
            if unknown:
                raise ValueError(
                    f"Library {self.name!r}: candidate {label!r} = {expression} "
                    f"uses {sorted(unknown)}, which are not arguments of the term "
                    f"{self.arguments}."
                )

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.candidates)

    @property
    def expressions(self) -> tuple[sympy.Expr, ...]:
        return tuple(expression for _, expression in self.candidates)

    def evaluate(self, points: Mapping[str, np.ndarray]) -> np.ndarray:
        """Every candidate at ``points``, shape ``(num_points, num_candidates)``.

        Parameters
        ----------
        points
            ``{argument: (num_points,)}`` values of each argument.
        """
        values = [np.asarray(points[a], dtype=float) for a in self.arguments]
        num_points = values[0].shape[0]
        symbols = [sympy.Symbol(a) for a in self.arguments]
        columns = []
        for expression in self.expressions:
            function = sympy.lambdify(symbols, expression, modules="numpy")
            column = np.broadcast_to(np.asarray(function(*values), float), num_points)
            columns.append(column)
        return np.stack(columns, axis=1)

    def without(self, labels: Sequence[str]) -> CandidateLibrary:
        """The library less the candidates ``labels`` (unknown labels are an error)."""
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(
                f"Library {self.name!r} has no candidate(s) {unknown} to exclude; "
                f"its candidates are {list(self.labels)}."
            )
        kept = tuple((k, e) for k, e in self.candidates if k not in set(labels))
        return dataclasses.replace(self, candidates=kept)

    def plus(self, extra: Mapping[str, str], name: str | None = None):
        """The library with user expressions ``{label: text}`` added."""
        added = tuple((label, parse_expression(text)) for label, text in extra.items())
        return CandidateLibrary(
            self.arguments, self.candidates + added, name or self.name
        )


def monomial_label(powers: Sequence[int], arguments: Sequence[str]) -> str:
    """``(1, 3)`` over ``("x", "y")`` gives ``"x_y3"``; all zeros give ``"const"``."""
    parts = [
        name if power == 1 else f"{name}{power}"
        for name, power in zip(arguments, powers, strict=True)
        if power
    ]
    return "_".join(parts) or "const"


def polynomial_library(
    arguments: Sequence[str], degree: int, include_constant: bool = True
) -> CandidateLibrary:
    """All monomials of the arguments up to ``degree``, lowest degree first.

    Example: ``polynomial_library(("v",), 3).labels`` is
    ``("const", "v", "v2", "v3")``.
    """
    if degree < 1:
        raise ValueError(f"A polynomial library needs degree >= 1, got {degree}.")
    symbols = [sympy.Symbol(a) for a in arguments]
    candidates = []
    for total in range(0 if include_constant else 1, degree + 1):
        for powers in _powers_of_total(len(arguments), total):
            expression = sympy.Mul(*(s**p for s, p in zip(symbols, powers)))
            candidates.append((monomial_label(powers, arguments), expression))
    return CandidateLibrary(tuple(arguments), tuple(candidates), f"poly{degree}")


def _powers_of_total(num_arguments: int, total: int):
    """Exponent tuples summing to ``total``, first argument's power highest first."""
    for powers in itertools.product(range(total, -1, -1), repeat=num_arguments):
        if sum(powers) == total:
            yield powers


def mechanistic_form(model: MechanisticModel, term: str) -> tuple[str, sympy.Expr]:
    """The model's own form of ``term`` as a candidate, its parameters at prior medians.

    The replaced term's mechanistic expression is evaluated symbolically in
    its arguments; its parameters (``K`` in ``y / K``) are set to their
    default priors' medians, and the coefficient fitted by the regression
    rescales it. The label is ``"<term>_form"``.
    """
    signature = model.replaceable_term(term)
    symbols = [sympy.Symbol(a) for a in signature.arguments]
    medians = {p.name: _prior_median(p.prior) for p in model.parameters}
    expression = getattr(model, f"term_{term}")(medians, *symbols)
    return f"{term}_form", sympy.expand(expression).evalf(6)


def _prior_median(prior) -> float:
    """Median of a prior, estimated from draws with a fixed key."""
    draws = prior.to_numpyro().sample(jax.random.key(0), (4001,))
    return float(np.median(np.asarray(draws)))


def library_label(text: str) -> str:
    """A short identifier for a user expression: non-identifier characters become _."""
    return re.sub(r"\W+", "_", text).strip("_") or "expr"
