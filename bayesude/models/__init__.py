"""The library of mechanistic models, looked up by name in specifications."""

from bayesude.core.mechanistic import MechanisticModel
from bayesude.models.fitzhugh_nagumo import FitzHughNagumo
from bayesude.models.hodgkin_huxley import HodgkinHuxley
from bayesude.models.integrate_and_fire import AdaptiveIntegrateAndFireSubthreshold
from bayesude.models.jansen_rit import JansenRit
from bayesude.models.membrane import PassiveMembrane, SlowCurrentMembrane
from bayesude.models.morris_lecar import MorrisLecar
from bayesude.models.population import LogisticGrowth, LotkaVolterra
from bayesude.models.van_der_pol import VanDerPol
from bayesude.models.wilson_cowan import WilsonCowan, WilsonCowanAdaptation

MODEL_LIBRARY: dict[str, type[MechanisticModel]] = {
    model.name: model
    for model in (
        PassiveMembrane,
        SlowCurrentMembrane,
        AdaptiveIntegrateAndFireSubthreshold,
        FitzHughNagumo,
        MorrisLecar,
        HodgkinHuxley,
        WilsonCowan,
        WilsonCowanAdaptation,
        JansenRit,
        LotkaVolterra,
        LogisticGrowth,
        VanDerPol,
    )
}


def mechanistic_model(name: str) -> MechanisticModel:
    """The library model called ``name``, e.g. ``"passive_membrane"``.

    A name with brackets, ``base[term = expression; ...]``, is a library model
    with terms written down as expressions (see :mod:`bayesude.models.discovered`).
    """
    if "[" in name:
        from bayesude.models.discovered import discovered_model

        return discovered_model(name)
    if name not in MODEL_LIBRARY:
        raise ValueError(
            f"Unknown mechanistic model {name!r}; the library has "
            f"{', '.join(sorted(MODEL_LIBRARY))}."
        )
    return MODEL_LIBRARY[name]()


__all__ = [
    "MODEL_LIBRARY",
    "AdaptiveIntegrateAndFireSubthreshold",
    "JansenRit",
    "FitzHughNagumo",
    "HodgkinHuxley",
    "LogisticGrowth",
    "LotkaVolterra",
    "MorrisLecar",
    "PassiveMembrane",
    "SlowCurrentMembrane",
    "VanDerPol",
    "WilsonCowan",
    "WilsonCowanAdaptation",
    "mechanistic_model",
]
