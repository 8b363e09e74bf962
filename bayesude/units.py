"""Units of data and models, read and converted with pint.

Data files state units as strings (``"mV"``, ``"s"``, ``"year"``); this module
checks that a string names a unit and converts values between compatible
units. Units pint does not know (``"thousands"``) are allowed on variables that
need no conversion, and compared as plain strings.
"""

from __future__ import annotations

import functools

import pint


@functools.cache
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry()


def parse_units(units: str) -> pint.Unit | None:
    """The pint unit named by ``units``, or None when pint does not know it."""
    try:
        return _registry().parse_units(str(units))
    except (pint.errors.PintError, AttributeError, TypeError, ValueError):
        return None


def is_time_unit(units: str) -> bool:
    """Whether ``units`` names a unit of time (``"ms"``, ``"s"``, ``"year"``, …)."""
    unit = parse_units(units)
    return unit is not None and unit.dimensionality == _registry().second.dimensionality


def conversion_factor(from_units: str, to_units: str) -> float | None:
    """Factor taking values in ``from_units`` to ``to_units``.

    Returns 1.0 for identical strings (whether or not pint knows them), and
    None when the two are not convertible (different dimensions, or a unit pint
    does not know).
    """
    if str(from_units) == str(to_units):
        return 1.0
    source, target = parse_units(from_units), parse_units(to_units)
    if source is None or target is None:
        return None
    try:
        return float(_registry().Quantity(1.0, source).to(target).magnitude)
    except pint.errors.DimensionalityError:
        return None
