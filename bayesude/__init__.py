"""Bayesian universal differential equations for neuroscience.

Importing bayesude switches JAX to float64: ODE solves inside NUTS need the
extra precision for reliable gradients, and every array that reaches the
solver is float64 by design. It also turns on JAX's persistent compilation
cache (in ``~/.cache/bayesude/jax``, or ``$BAYESUDE_COMPILATION_CACHE``;
set that variable to an empty string to turn the cache off), so a model
compiled once is not compiled again by a later run or another worker.
"""

import os
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

_cache = os.environ.get(
    "BAYESUDE_COMPILATION_CACHE",
    str(pathlib.Path.home() / ".cache" / "bayesude" / "jax"),
)
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

from bayesude.core.inputs import StepStimulus  # noqa: E402
from bayesude.core.neural import NeuralTerm  # noqa: E402
from bayesude.core.numerical_warnings import (  # noqa: E402
    BayesudeWarning,
    ChainMethodWarning,
    GradientAccuracyWarning,
    StiffnessWarning,
    TrajectorySizeWarning,
)
from bayesude.core.priors import Prior, prior  # noqa: E402
from bayesude.core.solve import SolverSettings  # noqa: E402
from bayesude.core.specification import (  # noqa: E402
    ModelSpecification,
    specification_from_dict,
)
from bayesude.data import load_current_clamp, select_subject  # noqa: E402
from bayesude.inference.check import check_model  # noqa: E402
from bayesude.inference.fit import fit  # noqa: E402
from bayesude.results import load_fit, save_fit  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BayesudeWarning",
    "ChainMethodWarning",
    "GradientAccuracyWarning",
    "StiffnessWarning",
    "StepStimulus",
    "TrajectorySizeWarning",
    "ModelSpecification",
    "NeuralTerm",
    "Prior",
    "SolverSettings",
    "check_model",
    "fit",
    "load_current_clamp",
    "load_fit",
    "prior",
    "save_fit",
    "select_subject",
    "specification_from_dict",
]
