"""Neural terms: small Equinox networks placed inside a vector field.

A neural term is described by plain settings (:class:`NeuralTerm`); the network
itself is built once as a template whose weights are replaced, at every
evaluation of the model, by one flat vector sampled from the prior. Keeping the
weights in one vector makes the prior, the posterior and its storage simple:
``<name>_weights`` with shape ``(num_weights,)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
}


@dataclasses.dataclass(frozen=True)
class NeuralTerm:
    """Settings of one neural network inside a universal differential equation.

    Exactly one of ``replaces`` and ``adds_to`` is given.

    Parameters
    ----------
    name
        Name of the term; its weights are the posterior variable
        ``<name>_weights``.
    inputs
        States or inputs the network reads, in order. For a replaced term they
        default to the term's own arguments.
    replaces
        Name of a replaceable term of the mechanistic model; the network's
        single output stands in for it.
    adds_to
        States whose derivatives receive the network's outputs, one output each.
    width, depth
        Hidden units per layer and number of hidden layers.
    activation
        Hidden-layer nonlinearity, one of :data:`ACTIVATIONS`.
    prior_scale
        Scale of the Normal priors: each weight has standard deviation
        ``prior_scale / sqrt(fan_in)`` and each bias ``prior_scale``, so the
        prior on the network's output does not grow with the width.
    output_scale
        Factor multiplying the network's output, in the units of what it
        replaces or adds to (state units, or state units per time unit).
    input_ranges
        ``{input: (low, high)}`` for inputs whose range cannot be read from the
        data (unobserved states). Each input is mapped to ``[-1, 1]`` over its
        range before entering the network.
    """

    name: str
    inputs: tuple[str, ...] = ()
    replaces: str | None = None
    adds_to: tuple[str, ...] = ()
    width: int = 8
    depth: int = 1
    activation: str = "tanh"
    prior_scale: float = 1.0
    output_scale: float = 1.0
    input_ranges: tuple[tuple[str, tuple[float, float]], ...] = ()

    def __post_init__(self) -> None:
        if (self.replaces is None) == (not self.adds_to):
            raise ValueError(
                f"Neural term {self.name!r} must either replace a term "
                f"(replaces: NAME) or add to states (adds_to: [STATE, ...]), "
                f"not both and not neither."
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"Neural term {self.name!r}: unknown activation {self.activation!r}; "
                f"use one of {', '.join(ACTIVATIONS)}."
            )
        if self.width < 1 or self.depth < 0:
            raise ValueError(
                f"Neural term {self.name!r}: width must be at least 1 and depth at "
                f"least 0, got width={self.width}, depth={self.depth}."
            )
        if not self.prior_scale > 0 or not self.output_scale > 0:
            raise ValueError(
                f"Neural term {self.name!r}: prior_scale and output_scale must be "
                f"positive, got {self.prior_scale} and {self.output_scale}."
            )

    @property
    def num_outputs(self) -> int:
        return 1 if self.replaces is not None else len(self.adds_to)


@dataclasses.dataclass(frozen=True)
class Network:
    """A built neural term: its template, weight count, priors and input scaling.

    Attributes
    ----------
    term
        The settings it was built from.
    inputs
        Names of the inputs, in order.
    input_centres, input_half_widths
        Affine map of each input to ``[-1, 1]``, shape ``(num_inputs,)``.
    weight_prior_scales
        Standard deviation of each weight's Normal prior, shape ``(num_weights,)``.
    """

    term: NeuralTerm
    inputs: tuple[str, ...]
    input_centres: np.ndarray
    input_half_widths: np.ndarray
    weight_prior_scales: np.ndarray
    _static: eqx.nn.MLP
    _unravel: Callable[[Array], object]

    @property
    def num_weights(self) -> int:
        return int(self.weight_prior_scales.shape[0])

    def __call__(self, weights: Array, *values: Array) -> Array:
        """Evaluate the network on scalar input values; returns ``(num_outputs,)``."""
        scaled = (jnp.stack(values) - self.input_centres) / self.input_half_widths
        network = eqx.combine(self._unravel(weights), self._static)
        return network(scaled) * self.term.output_scale


def build_network(
    term: NeuralTerm,
    inputs: tuple[str, ...],
    input_ranges: dict[str, tuple[float, float]],
) -> Network:
    """Build the template network of ``term`` reading ``inputs``.

    Parameters
    ----------
    term
        The term's settings.
    inputs
        Names of the network's inputs, in order.
    input_ranges
        ``(low, high)`` of every input, from the data or the term's settings.
    """
    template = eqx.nn.MLP(
        in_size=len(inputs),
        out_size=term.num_outputs,
        width_size=term.width,
        depth=term.depth,
        activation=ACTIVATIONS[term.activation],
        key=jax.random.key(0),
    )
    arrays, static = eqx.partition(template, eqx.is_array)
    flat, unravel = ravel_pytree(arrays)
    prior_scales = _weight_prior_scales(arrays, term.prior_scale)

    lows = np.array([input_ranges[name][0] for name in inputs], dtype=float)
    highs = np.array([input_ranges[name][1] for name in inputs], dtype=float)
    half_widths = np.where(highs > lows, (highs - lows) / 2.0, 1.0)
    return Network(
        term=term,
        inputs=inputs,
        input_centres=(lows + highs) / 2.0,
        input_half_widths=half_widths,
        weight_prior_scales=np.asarray(prior_scales, dtype=float),
        _static=static,
        _unravel=unravel,
    )


def _weight_prior_scales(arrays: eqx.nn.MLP, prior_scale: float) -> Array:
    """Prior standard deviation of every entry of the flattened weights.

    Weights get ``prior_scale / sqrt(fan_in)`` and biases ``prior_scale``; the
    result is flattened in the same order as the weights themselves.
    """
    weights = [layer.weight for layer in arrays.layers]
    biases = [layer.bias for layer in arrays.layers]
    scaled = eqx.tree_at(
        lambda mlp: (
            [layer.weight for layer in mlp.layers]
            + [layer.bias for layer in mlp.layers]
        ),
        arrays,
        [jnp.full(w.shape, prior_scale / math.sqrt(w.shape[1])) for w in weights]
        + [jnp.full(b.shape, prior_scale) for b in biases],
    )
    flat, _ = ravel_pytree(scaled)
    return flat
