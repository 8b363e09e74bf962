"""Prior distributions named in plain data, so model files and workflows can say them.

A prior is written as a mapping with the distribution's NumPyro name and its
arguments, for example ``{"distribution": "LogNormal", "loc": 3.0, "scale": 0.5}``.
The same mapping is what a workflow file holds and what is stored in a fit's
attributes, so a saved fit says exactly which priors produced it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpyro.distributions as dist

#: Distributions a prior may name, with the arguments each one takes.
SUPPORTED_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "Normal": ("loc", "scale"),
    "LogNormal": ("loc", "scale"),
    "HalfNormal": ("scale",),
    "HalfCauchy": ("scale",),
    "Exponential": ("rate",),
    "Gamma": ("concentration", "rate"),
    "Uniform": ("low", "high"),
    "StudentT": ("df", "loc", "scale"),
    "TruncatedNormal": ("loc", "scale", "low", "high"),
    "Beta": ("concentration1", "concentration0"),
}


@dataclasses.dataclass(frozen=True)
class Prior:
    """A named NumPyro distribution with fixed arguments.

    Parameters
    ----------
    distribution
        Name of the distribution in :data:`SUPPORTED_DISTRIBUTIONS`, e.g.
        ``"LogNormal"``.
    arguments
        The distribution's arguments by name, e.g. ``{"loc": 3.0, "scale": 0.5}``.
    """

    distribution: str
    arguments: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if self.distribution not in SUPPORTED_DISTRIBUTIONS:
            raise ValueError(
                f"Unknown prior distribution {self.distribution!r}; use one of "
                f"{', '.join(SUPPORTED_DISTRIBUTIONS)}."
            )
        expected = set(SUPPORTED_DISTRIBUTIONS[self.distribution])
        given = {name for name, _ in self.arguments}
        if given != expected:
            raise ValueError(
                f"A {self.distribution} prior takes the arguments "
                f"{sorted(expected)}, but got {sorted(given)}."
            )

    def to_numpyro(self) -> dist.Distribution:
        """The NumPyro distribution this prior describes."""
        return getattr(dist, self.distribution)(**dict(self.arguments))

    def as_dict(self) -> dict[str, Any]:
        """The plain mapping this prior was written as (for files and attributes)."""
        return {"distribution": self.distribution, **dict(self.arguments)}


#: Bounds of the support each state constraint allows.
_CONSTRAINT_BOUNDS = {"positive": (0.0, float("inf")), "unit_interval": (0.0, 1.0)}


def support_within(prior: Prior, constraint: str) -> bool:
    """Whether the support of ``prior`` lies within a state constraint.

    Parameters
    ----------
    prior
        The prior.
    constraint
        ``"positive"`` or ``"unit_interval"``.
    """
    low, high = _CONSTRAINT_BOUNDS[constraint]
    support = prior.to_numpyro().support
    support_low = float(getattr(support, "lower_bound", float("-inf")))
    support_high = float(getattr(support, "upper_bound", float("inf")))
    return support_low >= low and support_high <= high


def prior(distribution: str, **arguments: float) -> Prior:
    """Build a :class:`Prior`: ``prior("LogNormal", loc=3.0, scale=0.5)``."""
    return Prior(
        distribution, tuple(sorted((k, float(v)) for k, v in arguments.items()))
    )


def prior_from_dict(description: dict[str, Any], where: str) -> Prior:
    """Read a prior written as a mapping, naming ``where`` it came from in errors.

    Parameters
    ----------
    description
        ``{"distribution": NAME, ARGUMENT: VALUE, ...}``.
    where
        Where the mapping was written, e.g. ``"models.passive.priors.tau_m"``,
        so an error can point at it.
    """
    if not isinstance(description, dict) or "distribution" not in description:
        raise ValueError(
            f"{where}: a prior is written as a mapping with a 'distribution' key, "
            f"e.g. {{distribution: LogNormal, loc: 3.0, scale: 0.5}}; got "
            f"{description!r}."
        )
    arguments = {k: v for k, v in description.items() if k != "distribution"}
    for name, value in arguments.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(
                f"{where}: the prior argument {name!r} must be a number, got {value!r}."
            )
    try:
        return prior(str(description["distribution"]), **arguments)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
