"""Observation models in the NumPyro model, and their pointwise densities after a fit.

The NumPyro side (:func:`observation_distribution`) samples the observation
model's parameters and returns the distribution of the observations given the
solved state. The numpy side (:func:`pointwise_log_likelihood`,
:func:`predictive_draws`) evaluates the same distributions with scipy on the
posterior draws, for LOO and posterior predictive checks without recompiling.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy.stats
from jax import Array

from bayesude.core.observations import ObservationModel, mapped_mean


def observation_distribution(
    model: ObservationModel, name: str, predicted: Array, data_scale: float
) -> dist.Distribution:
    """Sample ``model``'s parameters for variable ``name``; the observations' law.

    Parameters
    ----------
    model
        The variable's observation model.
    name
        The observed data variable; its parameter sites are ``gain_<name>``,
        ``offset_<name>``, ``concentration_<name>`` and ``sigma_<name>``.
    predicted
        The solved state at every observation, shape ``(num_observations,)``.
    data_scale
        Standard deviation of the observations (of their logarithm for a
        log-normal model), the default noise prior scale.
    """
    mean = predicted
    if model.maps_state:
        gain = numpyro.sample(f"gain_{name}", model.gain_prior.to_numpyro())
        offset = numpyro.sample(f"offset_{name}", model.offset_prior.to_numpyro())
        mean = mapped_mean(model, predicted, gain, offset)
    if model.family == "poisson":
        return dist.Poisson(mean)
    if model.family == "negative_binomial":
        concentration = numpyro.sample(
            f"concentration_{name}", model.concentration_prior.to_numpyro()
        )
        return dist.NegativeBinomial2(mean, concentration)

    scale = model.noise_prior_scale
    sigma = numpyro.sample(f"sigma_{name}", dist.HalfNormal(scale or data_scale))
    if model.family == "student_t":
        return dist.StudentT(model.student_t_df, mean, sigma)
    if model.family == "lognormal":
        # A failed solve leaves zeros; the -inf factor rejects it, and the floor
        # keeps log(0) out of the gradient.
        return dist.LogNormal(jnp.log(jnp.maximum(mean, 1e-300)), sigma)
    return dist.Normal(mean, sigma)


def _frozen(model: ObservationModel, name: str, samples: dict, state: np.ndarray):
    """The scipy distribution of every observation under every draw.

    ``state`` has shape ``(chain, draw, num_observations)``; scalar parameters
    ``(chain, draw)`` are broadcast over the observations.
    """

    def parameter(site: str) -> np.ndarray:
        return np.asarray(samples[f"{site}_{name}"])[..., None]

    mean = state
    if model.maps_state:
        mean = np.asarray(
            mapped_mean(model, state, parameter("gain"), parameter("offset"))
        )
    if model.family == "poisson":
        return scipy.stats.poisson(mean)
    if model.family == "negative_binomial":
        concentration = parameter("concentration")
        # NumPyro's NegativeBinomial2(μ, φ) is scipy's nbinom(n=φ, p=φ/(φ+μ)).
        return scipy.stats.nbinom(concentration, concentration / (concentration + mean))
    if model.family == "student_t":
        return scipy.stats.t(model.student_t_df, loc=mean, scale=parameter("sigma"))
    if model.family == "lognormal":
        return scipy.stats.lognorm(s=parameter("sigma"), scale=np.maximum(mean, 1e-300))
    return scipy.stats.norm(loc=mean, scale=parameter("sigma"))


def pointwise_log_likelihood(
    model: ObservationModel,
    name: str,
    samples: dict[str, np.ndarray],
    state: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """Log density of every observation under every draw, ``(chain, draw, obs)``.

    Parameters
    ----------
    model, name
        The observation model and the observed variable's name.
    samples
        Posterior draws, ``{site: (chain, draw, ...)}``.
    state
        Solved state at the observations, ``(chain, draw, num_observations)``.
    values
        The observations, ``(num_observations,)``.
    """
    frozen = _frozen(model, name, samples, state)
    if model.family in ("poisson", "negative_binomial"):
        return frozen.logpmf(values)
    return frozen.logpdf(values)


def predictive_draws(
    model: ObservationModel,
    name: str,
    samples: dict[str, np.ndarray],
    state: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One posterior predictive observation per draw, ``(chain, draw, obs)``."""
    frozen = _frozen(model, name, samples, state)
    return np.asarray(frozen.rvs(random_state=rng), dtype=float)


def expected_observation(
    model: ObservationModel,
    name: str,
    samples: dict[str, np.ndarray],
    state: np.ndarray,
) -> np.ndarray:
    """Mean of the observation under every draw (the rate or expected count).

    ``state`` has shape ``(chain, draw, ...)``; the result has the same shape.
    """
    if not model.maps_state:
        return np.asarray(state)

    def parameter(site: str) -> np.ndarray:
        values = np.asarray(samples[f"{site}_{name}"])
        return values.reshape(values.shape + (1,) * (state.ndim - values.ndim))

    return np.asarray(mapped_mean(model, state, parameter("gain"), parameter("offset")))
