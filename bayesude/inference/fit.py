"""Fitting a specification to one subject: NUTS, SVI or MAP, returning InferenceData."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import xarray as xr
from numpyro import handlers
from numpyro.infer import (
    MCMC,
    SVI,
    Trace_ELBO,
    init_to_median,
    init_to_uniform,
    init_to_value,
)
from numpyro.infer.autoguide import AutoDelta, AutoNormal
from numpyro.infer.util import (
    constrain_fn,
    initialize_model,
    potential_energy,
    unconstrain_fn,
)

from bayesude.core.specification import ModelSpecification
from bayesude.inference.laplace import LaplaceStart, find_laplace_start
from bayesude.inference.model import BuiltModel, build_model
from bayesude.inference.preflight import (
    offending_sites,
    resolve_chain_method,
    resolve_solver,
    trajectory_size_bytes,
    warn_gradient_accuracy,
    warn_trajectory_size,
)
from bayesude.inference.prepared_data import prepare_data
from bayesude.inference.solver_failures import FailureCountingNUTS, SolverFailureLog
from bayesude.results import assemble_inference_data

logger = logging.getLogger(__name__)

METHODS = ("nuts", "svi", "map")
INITIALISATIONS = ("prior", "random", "map", "svi", "laplace")

#: Attempts per chain at a start with a finite log density and gradient
#: (NumPyro's own limit), before the fit stops and names the failing sites.
INIT_ATTEMPTS = 100
#: Largest number of unconstrained dimensions for which warm-up goes on adapting
#: a Laplace start's dense mass matrix. Above it the Hessian's inverse is kept:
#: a dense covariance of ~100 dimensions estimated from the few dozen draws of
#: an early warm-up window is worse than the Hessian.
LAPLACE_ADAPTED_MAX_DIMENSIONS = 40

#: Jitter (standard deviation, unconstrained space) added to a MAP start so the
#: chains start apart and R-hat can still detect a failure to mix.
_MAP_START_JITTER = 0.1


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """How a fit samples or optimises; see :func:`fit` for each field.

    Stored with every fit (attribute ``inference_settings``).
    """

    method: str
    num_chains: int
    num_warmup: int
    num_samples: int
    init: str
    target_accept_prob: float
    max_tree_depth: int
    dense_mass: bool
    chain_method: str
    svi_steps: int
    svi_learning_rate: float
    chain_method_used: str
    save_trajectories: bool


def fit(
    spec: ModelSpecification,
    data: xr.Dataset,
    *,
    method: str = "nuts",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    progress_bar: bool = True,
    init: str = "prior",
    initial_values: Sequence[dict[str, float] | None] | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    chain_method: str = "vectorized",
    svi_steps: int = 2000,
    svi_learning_rate: float = 0.01,
    num_trajectory_draws: int = 100,
    save_trajectories: bool = False,
    subject: str | None = None,
    model_name: str | None = None,
) -> az.InferenceData:
    """Fit ``spec`` to one subject's recording and return the posterior.

    Parameters
    ----------
    spec
        The model specification.
    data
        One subject's data, dimensions ``(sweep, time)``; a dataset with a
        ``subject`` dimension of length one is accepted too.
    method
        ``"nuts"`` (the default and the reference), ``"svi"`` (mean-field
        normal guide; one "chain" of ``num_samples`` guide draws) or ``"map"``
        (one draw at the posterior mode).
    num_chains, num_warmup, num_samples
        NUTS chains and their warm-up and kept draws per chain.
    seed
        Seed of every random choice of the fit: initialisation, sampling,
        posterior predictive draws. The same seed gives the same result.
    progress_bar
        Show NumPyro's progress bar while sampling.
    init
        Where NUTS chains start: ``"prior"`` (around prior medians),
        ``"random"`` (uniform in [-2, 2] in unconstrained space, so chains start
        apart), ``"map"`` (jittered around the MAP estimate), ``"svi"`` (draws
        from an SVI fit) or ``"laplace"`` (draws around the best of
        ``num_chains`` MAP estimates, with the inverse Hessian there as NUTS's
        dense mass matrix; see :mod:`bayesude.inference.laplace`). A start
        whose log density or gradient is not finite is redrawn, up to
        :data:`INIT_ATTEMPTS` times per chain; then the fit stops with an error
        naming the sites at fault.
    initial_values
        Optional starting values per chain (constrained space, by site name);
        None entries use ``init``. A start whose ODE solve fails is replaced by
        the default start, and the failed evaluation is counted as a warm-up
        solver failure of that chain.
    target_accept_prob, max_tree_depth, dense_mass
        NUTS settings.
    chain_method
        ``"vectorized"`` (all chains in one compiled program, fastest on a
        CPU), ``"sequential"``, or ``"parallel"``, which needs one JAX device
        per chain and falls back to ``"vectorized"`` with a
        :class:`~bayesude.core.numerical_warnings.ChainMethodWarning` otherwise.
        The method used is stored in the ``inference_settings`` attribute
        (``chain_method_used``).
    svi_steps, svi_learning_rate
        Adam steps and learning rate for ``"svi"``/``"map"`` and for SVI/MAP
        initialisation.
    num_trajectory_draws
        Draws of every chain for which the noise-free trajectories of the
        observed variables are stored (group ``predictions``), for plots and
        R-hat on trajectories; 0 stores none.
    save_trajectories
        Store the trajectories of every state for every draw instead; a
        :class:`~bayesude.core.numerical_warnings.TrajectorySizeWarning` gives
        the size before sampling. Solves save only the observation times either
        way, and the predictive pass solves draws in chunks.
    subject, model_name
        Labels stored with the result.

    Returns
    -------
    arviz.InferenceData
        See ``docs/conventions.md`` for the groups and attributes.
    """
    _check_choice("method", method, METHODS)
    _check_choice("init", init, INITIALISATIONS)
    subject = subject or _subject_label(data)
    if "subject" in data.dims:
        data = data.isel(subject=0, drop=True)
    prepared = prepare_data(spec, data, subject)
    spec = resolve_solver(spec, prepared, seed)
    warn_gradient_accuracy(spec)
    chain_method_used = "none"
    if method == "nuts":
        chain_method_used = resolve_chain_method(chain_method, num_chains)
    if save_trajectories:
        warn_trajectory_size(
            trajectory_size_bytes(
                num_chains,
                num_samples,
                prepared.num_sweeps,
                prepared.times.size,
                len(spec.state_names),
            ),
            f"{num_chains} chains × {num_samples} draws × {prepared.num_sweeps} "
            f"sweeps × {prepared.times.size} times × {len(spec.state_names)} states",
        )
    spec = _with_adjoint(
        spec,
        spec.solver.resolved(
            sum(build_model(spec, prepared).latent_sizes.values()), method == "nuts"
        ).adjoint,
    )
    key_fit, key_predict = jax.random.split(jax.random.key(seed))
    started = time.perf_counter()

    settings = InferenceSettings(
        method=method,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        init=init,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        chain_method=chain_method,
        svi_steps=svi_steps,
        svi_learning_rate=svi_learning_rate,
        chain_method_used=chain_method_used,
        save_trajectories=save_trajectories,
    )
    if method == "nuts":
        samples, stats = _run_nuts(
            spec, prepared, key_fit, settings, initial_values, progress_bar
        )
    else:
        built = build_model(spec, prepared)
        guide_samples, _ = _fit_guide(
            built,
            key_fit,
            method,
            svi_steps,
            svi_learning_rate,
            num_samples if method == "svi" else 1,
        )
        samples = {name: value[None] for name, value in guide_samples.items()}
        stats = {}
    wall_time = time.perf_counter() - started

    logger.info(
        "Fitted %s to %s with %s in %.1f s.",
        model_name or "model",
        subject,
        method,
        wall_time,
    )
    started = time.perf_counter()
    idata = assemble_inference_data(
        spec=spec,
        data=prepared,
        built=build_model(spec, prepared),
        samples=samples,
        stats=stats,
        key=key_predict,
        num_trajectory_draws=num_trajectory_draws,
        save_trajectories=save_trajectories,
        attributes={
            "chain_method_used": chain_method_used,
            "subject": subject,
            "model_name": model_name or (spec.mechanistic or "neural"),
            "seed": seed,
            "wall_time_s": wall_time,
            "inference_settings": dataclasses.asdict(settings),
        },
    )
    logger.info(
        "Posterior predictive draws and log-likelihoods computed in %.1f s.",
        time.perf_counter() - started,
    )
    return idata


def _run_nuts(
    spec: ModelSpecification,
    prepared,
    key: jax.Array,
    settings: InferenceSettings,
    initial_values,
    progress_bar: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    failure_log = SolverFailureLog(settings.num_chains, settings.chain_method_used)
    built = build_model(spec, prepared, failure_log)
    forward_mode = spec.solver.adjoint == "forward"
    key_init, key_warmup = jax.random.split(key)

    # SVI and MAP optimisers differentiate in reverse mode, so their guide is
    # fitted to a model whose solve supports it.
    guide_model = build_model(_with_adjoint(spec, "recursive_checkpoint"), prepared)
    laplace = None
    if settings.init == "laplace":
        key_init, key_laplace = jax.random.split(key_init)
        laplace = find_laplace_start(
            guide_model.model,
            key_laplace,
            settings.num_chains,
            settings.svi_steps,
            settings.svi_learning_rate,
            build_model(_with_adjoint(spec, "direct"), prepared).model,
        )
    init_params, init_failures, inverse_mass_matrix = _initial_parameters(
        guide_model, key_init, settings, initial_values, laplace
    )
    kernel = FailureCountingNUTS(
        built.model,
        failure_log,
        target_accept_prob=settings.target_accept_prob,
        max_tree_depth=settings.max_tree_depth,
        dense_mass=settings.dense_mass or laplace is not None,
        adapt_mass_matrix=laplace is None
        or laplace.covariance.shape[0] <= LAPLACE_ADAPTED_MAX_DIMENSIONS,
        forward_mode_differentiation=forward_mode,
        inverse_mass_matrix=inverse_mass_matrix,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        num_chains=settings.num_chains,
        chain_method=settings.chain_method_used,
        progress_bar=progress_bar,
    )
    extra_fields = (
        "diverging",
        "num_steps",
        "energy",
        "potential_energy",
        "accept_prob",
        "adapt_state.step_size",
    )

    started = time.perf_counter()
    failure_log.start_phase(settings.num_warmup)
    mcmc.warmup(
        key_warmup,
        init_params=init_params,
        extra_fields=("diverging", "num_steps"),
        collect_warmup=True,
    )
    warmup_failures = failure_log.stop()
    warmup_failures[:, 0] += init_failures
    warmup_extra = mcmc.get_extra_fields(group_by_chain=True)
    logger.info(
        "Warm-up finished in %.1f s (compilation included).",
        time.perf_counter() - started,
    )

    failure_log.start_phase(settings.num_samples)
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=extra_fields)
    sampling_failures = failure_log.stop()
    _log_failures(warmup_failures, sampling_failures)

    samples = {
        k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()
    }
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {
        "diverging": np.asarray(extra["diverging"]),
        "n_steps": np.asarray(extra["num_steps"]),
        "tree_depth": np.floor(np.log2(np.asarray(extra["num_steps"]))).astype(int),
        "energy": np.asarray(extra["energy"]),
        "lp": -np.asarray(extra["potential_energy"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
        "solver_failure": sampling_failures,
        "warmup:diverging": np.asarray(warmup_extra["diverging"]),
        "warmup:n_steps": np.asarray(warmup_extra["num_steps"]),
        "warmup:solver_failure": warmup_failures,
    }
    return samples, stats


def _initial_parameters(
    guide_model: BuiltModel,
    key: jax.Array,
    settings: InferenceSettings,
    initial_values,
    laplace: LaplaceStart | None = None,
) -> tuple[dict[str, jax.Array], np.ndarray, dict | None]:
    """Unconstrained starting points, failed starts and a starting mass matrix.

    Returns the starting points ``{site: (num_chains, ...)}``; per chain, 1
    where the requested start had a failed solve (or non-finite log density)
    and had to be moved; and, after an SVI fit or with ``laplace``, NUTS's
    initial inverse mass matrix (None otherwise).
    """
    num_chains, init = settings.num_chains, settings.init
    keys = jax.random.split(key, num_chains + 1)
    default_values, scales = None, None
    if laplace is not None:
        draws = laplace.draws(keys[-1], num_chains, scale=1.0)
        default_values = jax.vmap(lambda z: constrain_fn(guide_model.model, (), {}, z))(
            draws
        )
    elif init in ("map", "svi"):
        default_values, scales = _fit_guide(
            guide_model,
            keys[-1],
            init,
            settings.svi_steps,
            settings.svi_learning_rate,
            num_chains,
        )

    starts, failures = [], np.zeros(num_chains, dtype=np.int64)
    requested = list(initial_values or [])
    for chain in range(num_chains):
        values = requested[chain] if chain < len(requested) else None
        fallback = _chain_values(default_values, chain)
        start, failed = _valid_start(guide_model, keys[chain], values, fallback, init)
        starts.append(start)
        failures[chain] = int(failed)
    stacked = jax.tree.map(lambda *chains: jnp.stack(chains), *starts)
    if laplace is not None:
        return stacked, failures, {laplace.site_names: jnp.asarray(laplace.covariance)}
    return stacked, failures, _inverse_mass_matrix(scales)


def _inverse_mass_matrix(scales: dict[str, np.ndarray] | None):
    """NUTS's starting inverse mass matrix from an SVI fit's unconstrained scales.

    Starting adaptation from the posterior's own scales, instead of the
    identity, spares warm-up its longest trees: mechanistic parameters often
    differ in posterior scale by a factor of a hundred.
    """
    if scales is None:
        return None
    names = tuple(sorted(scales))
    return {names: jnp.concatenate([jnp.ravel(scales[name]) ** 2 for name in names])}


def _chain_values(default_values, chain) -> dict[str, Any] | None:
    if default_values is None:
        return None
    return {name: value[chain] for name, value in default_values.items()}


def _valid_start(
    built, key, values, fallback, init
) -> tuple[dict[str, jax.Array], bool]:
    """``values`` as a starting point if its log density is finite, else the default.

    ``built`` must support reverse-mode gradients (NumPyro's initialisation
    checks the gradient too); the point is valid for any adjoint.
    """
    key_default, key_jitter = jax.random.split(key)
    strategy = init_to_median(num_samples=15)
    if init == "random":
        strategy = init_to_uniform(radius=2.0)
    if fallback is not None:
        strategy = init_to_value(values=fallback)
    default = _initialize(key_default, built, strategy)
    default_z = default.z
    if fallback is not None and init == "map":
        default_z = _jitter(default_z, key_jitter)
    if values is None:
        return default_z, False

    constrained = {
        **constrain_fn(built.model, (), {}, default_z),
        **{name: jnp.asarray(value) for name, value in values.items()},
    }
    requested = unconstrain_fn(built.model, (), {}, constrained)
    potential = jax.jit(lambda z: potential_energy(built.model, (), {}, z))
    if np.isfinite(potential(requested)):
        return requested, False

    # Moving only part of the way back would leave the chain at the edge of the
    # region where the solve fails, where most proposals are rejected and
    # step-size adaptation shrinks the step until the chain cannot move.
    logger.warning(
        "The requested starting values %s give a failed ODE solve or a non-finite log "
        "density; this chain starts from the default initialisation instead.",
        values,
    )
    return default_z, True


def _initialize(key, built, strategy):
    """NumPyro's initialisation (up to :data:`INIT_ATTEMPTS` draws), explained.

    When every attempt fails, the error names the sites whose log density is
    not finite at the last attempt, instead of NumPyro's generic message.
    """
    try:
        return initialize_model(key, built.model, init_strategy=strategy).param_info
    except RuntimeError as error:
        if "Cannot find valid initial parameters" not in str(error):
            raise
    values = handlers.trace(
        # The seed must act before the strategy, which draws from each site.
        handlers.substitute(handlers.seed(built.model, key), substitute_fn=strategy)
    ).get_trace()
    latent = {
        name: site["value"]
        for name, site in values.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    sites = offending_sites(built.model, latent) or ["no single site"]
    raise RuntimeError(
        f"No starting point with a finite log density and gradient was found in "
        f"{INIT_ATTEMPTS} attempts; at the last one the problem was at "
        f"{', '.join(sites)}. Check that the priors of these sites match the "
        f"data and the model's constraints, or start from init='svi'."
    ) from None


def _jitter(z, key):
    leaves, treedef = jax.tree.flatten(z)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [
            leaf + _MAP_START_JITTER * jax.random.normal(k, jnp.shape(leaf))
            for leaf, k in zip(leaves, keys, strict=True)
        ],
    )


def _fit_guide(
    built, key, method, num_steps, learning_rate, num_draws
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Fit a MAP (AutoDelta) or mean-field normal (AutoNormal) guide.

    Returns
    -------
    draws
        ``{site: (num_draws, ...)}`` in constrained space (for MAP, the mode
        repeated).
    scales
        For AutoNormal, each site's posterior standard deviation in
        unconstrained space, by site name; None for MAP.
    """
    guide_class = AutoDelta if method == "map" else AutoNormal
    guide = guide_class(built.model, init_loc_fn=init_to_median(num_samples=15))
    svi = SVI(built.model, guide, numpyro.optim.Adam(learning_rate), Trace_ELBO())
    key_fit, key_draw = jax.random.split(key)
    started = time.perf_counter()
    result = svi.run(key_fit, num_steps, progress_bar=False)
    if not np.isfinite(result.losses[-1]):
        raise RuntimeError(
            f"The {method.upper()} optimisation ended with a non-finite loss; try a "
            f"smaller svi_learning_rate or more informative priors."
        )
    logger.info(
        "%s optimisation: %d steps in %.1f s, final loss %.1f.",
        method.upper(),
        num_steps,
        time.perf_counter() - started,
        float(result.losses[-1]),
    )
    draws = guide.sample_posterior(key_draw, result.params, sample_shape=(num_draws,))
    draws = {
        name: np.asarray(draws[name]) for name in draws if name in built.latent_sizes
    }
    scales = None
    if method == "svi":
        scales = {
            name: np.asarray(result.params[f"{name}_auto_scale"])
            for name in built.latent_sizes
        }
    return draws, scales


def _log_failures(warmup: np.ndarray, sampling: np.ndarray) -> None:
    if warmup.sum() or sampling.sum():
        logger.info(
            "Proposals rejected because the ODE solve failed: %d during warm-up and %d "
            "during sampling (per chain: %s / %s).",
            warmup.sum(),
            sampling.sum(),
            warmup.sum(axis=1).tolist(),
            sampling.sum(axis=1).tolist(),
        )


def _with_adjoint(spec: ModelSpecification, adjoint: str) -> ModelSpecification:
    return dataclasses.replace(
        spec, solver=dataclasses.replace(spec.solver, adjoint=adjoint)
    )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


def _subject_label(data: xr.Dataset) -> str:
    if "subject" in data.coords and data["subject"].size == 1:
        return str(np.asarray(data["subject"].values).reshape(-1)[0])
    return "subject"
