"""The small family of warnings bayesude raises, so users can catch or filter them.

Every warning is a :class:`BayesudeWarning`; filter that class to silence them all,
or one subclass to silence one kind::

    warnings.simplefilter("ignore", bayesude.GradientAccuracyWarning)
"""

from __future__ import annotations


class BayesudeWarning(UserWarning):
    """Base class of every warning raised by bayesude."""


class StiffnessWarning(BayesudeWarning):
    """The problem looks stiff for the explicit solver that was chosen."""


class GradientAccuracyWarning(BayesudeWarning):
    """Tolerances or solver order make the gradients given to the sampler unreliable."""


class ChainMethodWarning(BayesudeWarning):
    """The requested way of running chains is not available; another is used."""


class TrajectorySizeWarning(BayesudeWarning):
    """Keeping every draw's trajectories will take a lot of memory and disk."""
