"""How an observed data variable relates to the state it measures.

An :class:`ObservationModel` is plain, serialisable data chosen per observed
variable in a :class:`~bayesude.core.specification.ModelSpecification`:

- ``gaussian`` / ``student_t``: the variable *is* the state plus noise
  (membrane voltage, a smoothed rate already in the state's units);
- ``lognormal``: the variable is the state times log-normal noise (positive
  quantities such as population sizes, whose error grows with their size);
- ``poisson`` / ``negative_binomial``: spike counts in bins, whose expected
  count per bin is ``link(gain * state + offset)``;
- ``rate``: a population signal (e.g. a firing rate in Hz) observed with
  Gaussian noise around ``link(gain * state + offset)``.

The gain and offset absorb the bin width and the units of the latent state, so
a latent Wilson–Cowan activity in [0, 1] can explain counts or rates in Hz.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from bayesude.core.priors import Prior, prior, prior_from_dict

#: Observation families and whether each maps the state through gain, offset, link.
FAMILIES = {
    "gaussian": False,
    "student_t": False,
    "lognormal": False,
    "poisson": True,
    "negative_binomial": True,
    "rate": True,
}

#: Families whose observations are non-negative integer counts.
COUNT_FAMILIES = ("poisson", "negative_binomial")

LINKS = ("softplus", "exp", "identity")

_DEFAULT_GAIN = prior("LogNormal", loc=0.0, scale=1.0)
_DEFAULT_OFFSET = prior("Normal", loc=0.0, scale=2.0)
# Concentration of the negative binomial: Var = μ + μ²/φ. log φ ~ N(log 5, 1.5)
# spans near-Poisson counts (φ ≈ 100) to strongly bursty ones (φ ≈ 0.3).
_DEFAULT_CONCENTRATION = prior("LogNormal", loc=1.6, scale=1.5)


@dataclasses.dataclass(frozen=True)
class ObservationModel:
    """The distribution of one observed variable given its state.

    Parameters
    ----------
    family
        ``"gaussian"``, ``"student_t"``, ``"lognormal"``, ``"poisson"``,
        ``"negative_binomial"`` or ``"rate"``.
    link
        For the mapped families: ``"softplus"`` (default; stays finite and
        nearly linear for large drive), ``"exp"`` or ``"identity"``.
    gain_prior, offset_prior
        Priors of the affine map ``gain * state + offset`` inside the link
        (mapped families only). The gain's default is positive (LogNormal), so
        a larger state means a larger rate.
    concentration_prior
        Prior of the negative binomial's concentration φ
        (variance ``μ + μ² / φ``).
    noise_prior_scale
        Scale of the HalfNormal prior on the noise standard deviation
        (``gaussian``, ``student_t``, ``rate``), in the variable's units, or
        on the log scale for ``lognormal``; None uses the data's standard
        deviation (of its logarithm for ``lognormal``).
    student_t_df
        Degrees of freedom of Student-t noise.
    """

    family: str = "gaussian"
    link: str = "softplus"
    gain_prior: Prior = _DEFAULT_GAIN
    offset_prior: Prior = _DEFAULT_OFFSET
    concentration_prior: Prior = _DEFAULT_CONCENTRATION
    noise_prior_scale: float | None = None
    student_t_df: float = 4.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"Unknown observation family {self.family!r}; use one of "
                f"{', '.join(FAMILIES)}."
            )
        if self.link not in LINKS:
            raise ValueError(
                f"Unknown link {self.link!r}; use one of {', '.join(LINKS)}."
            )
        if self.family in COUNT_FAMILIES and self.link == "identity":
            raise ValueError(
                f"A {self.family} observation needs a positive expected count; "
                f"use link 'softplus' or 'exp' instead of 'identity'."
            )
        if self.noise_prior_scale is not None and not self.noise_prior_scale > 0:
            raise ValueError(
                f"noise_prior_scale must be positive or null, got "
                f"{self.noise_prior_scale!r}."
            )
        if not self.student_t_df > 0:
            raise ValueError(
                f"student_t_df must be positive, got {self.student_t_df!r}."
            )

    @property
    def maps_state(self) -> bool:
        """True when the observation is ``link(gain * state + offset)``."""
        return FAMILIES[self.family]

    @property
    def has_noise_scale(self) -> bool:
        return self.family in ("gaussian", "student_t", "lognormal", "rate")

    def parameter_sites(self, variable: str) -> tuple[str, ...]:
        """Names of the sampled sites of this observation model for ``variable``."""
        sites = []
        if self.maps_state:
            sites += [f"gain_{variable}", f"offset_{variable}"]
        if self.family == "negative_binomial":
            sites.append(f"concentration_{variable}")
        if self.has_noise_scale:
            sites.append(f"sigma_{variable}")
        return tuple(sites)

    def as_dict(self) -> dict[str, Any]:
        """Plain data describing this observation model (JSON-serialisable)."""
        return {
            "family": self.family,
            "link": self.link,
            "gain_prior": self.gain_prior.as_dict(),
            "offset_prior": self.offset_prior.as_dict(),
            "concentration_prior": self.concentration_prior.as_dict(),
            "noise_prior_scale": self.noise_prior_scale,
            "student_t_df": self.student_t_df,
        }


def observation_model_from_dict(description: Any, where: str) -> ObservationModel:
    """Read an observation model from plain data, naming ``where`` in errors.

    ``description`` is a family name (``"poisson"``) or a mapping with the
    fields of :class:`ObservationModel`, priors written as prior mappings.
    """
    if isinstance(description, ObservationModel):
        return description
    if isinstance(description, str):
        description = {"family": description}
    if not isinstance(description, dict):
        raise ValueError(
            f"{where}: an observation model is a family name or a mapping such as "
            f"{{family: poisson, link: softplus}}; got {description!r}."
        )
    known = {f.name for f in dataclasses.fields(ObservationModel)}
    unknown = sorted(set(description) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown}; an observation model takes "
            f"{sorted(known)}."
        )
    values = dict(description)
    for name in ("gain_prior", "offset_prior", "concentration_prior"):
        if name in values and not isinstance(values[name], Prior):
            values[name] = prior_from_dict(values[name], f"{where}.{name}")
    try:
        return ObservationModel(**values)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def apply_link(link: str, drive: Array) -> Array:
    """``link(drive)``: softplus, exp or identity, elementwise (pure JAX)."""
    if link == "softplus":
        return jax.nn.softplus(drive)
    if link == "exp":
        return jnp.exp(drive)
    return drive


def mapped_mean(
    model: ObservationModel, state: Array, gain: Array, offset: Array
) -> Array:
    """Expected observation ``link(gain * state + offset)`` of a mapped family."""
    return apply_link(model.link, gain * state + offset)
