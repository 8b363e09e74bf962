"""The benchmark problems fitted through bayesude's public ``fit``, as a user would."""

from __future__ import annotations

import logging
import time

import numpy as np
import reference_problem as problem

import bayesude

#: Message bayesude's fit logs when sampling ends, before the posterior
#: predictive draws; it marks the end of the timed part.
_SAMPLING_DONE = "Fitted"


def specification(ude: bool = False, width: int = 4) -> bayesude.ModelSpecification:
    """The reference problem (or its UDE variant) as a bayesude specification."""
    neural_terms = ()
    if ude:
        neural_terms = (
            bayesude.NeuralTerm(
                "cubic_network", replaces="cubic_nonlinearity", width=width
            ),
        )
    return bayesude.ModelSpecification(
        mechanistic="fitzhugh_nagumo",
        observed={"v": "v", "w": "w"},
        neural_terms=neural_terms,
        fixed={"I_ext": problem.I_EXT},
        initial_state={"v": problem.Y0[0], "w": problem.Y0[1]},
        noise_prior_scale=problem.NOISE_PRIOR_SCALE,
        solver=bayesude.SolverSettings(
            rtol=problem.RTOL, atol=problem.ATOL, max_steps=problem.MAX_STEPS
        ),
    )


class _SamplingEnd(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(_SAMPLING_DONE):
            self.at = record.created


def fit_bayesude(spec, dataset, size, clock, starts, seed=0) -> dict:
    """Fit with ``bayesude.fit``; returns the record's inputs.

    The timed part runs from the call to the end of sampling; the posterior
    predictive draws and log-likelihoods that ``fit`` adds afterwards are
    reported separately (``assembly_s``).
    """
    fit_logger = logging.getLogger("bayesude.inference.fit")
    marker = _SamplingEnd()
    fit_logger.addHandler(marker)
    fit_logger.setLevel(logging.INFO)
    compiled_before = clock.seconds
    started = time.time()
    idata = bayesude.fit(
        spec,
        dataset,
        method="nuts",
        num_chains=size.num_chains,
        num_warmup=size.num_warmup,
        num_samples=size.num_samples,
        seed=seed,
        progress_bar=False,
        init="prior",
        initial_values=starts,
    )
    finished = time.time()
    cpu_s = problem.cpu_seconds()
    fit_logger.removeHandler(marker)

    ended = marker.at or finished
    stats = idata.sample_stats
    warmup_steps = 0
    if "n_steps" in idata.warmup_sample_stats:
        warmup_steps = int(idata.warmup_sample_stats["n_steps"].sum())
    return {
        "draws": {
            name: np.asarray(idata.posterior[name])
            for name in problem.PARAMETERS
            if name in idata.posterior
        },
        "wall_s": ended - started,
        "compile_s": clock.seconds_until(ended) - compiled_before,
        "num_gradients": warmup_steps + int(stats["n_steps"].sum()),
        "divergences": int(stats["diverging"].sum()),
        "assembly_s": finished - ended,
        "solver_failures": int(stats["solver_failure"].sum()),
        "cpu_s": cpu_s,
    }
