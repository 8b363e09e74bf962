"""Write the synthetic FitzHugh–Nagumo recording used by the discovery demonstration.

The classic parameters (a = 0.7, b = 0.8, tau = 12.5, I_ext = 0.5) give a limit
cycle; both states are observed every 0.5 time units over [0, 80] with Gaussian
noise of standard deviation ``--noise`` (default 0.05, about 1.3% of the range
of v). Run from the repository root:

    python data/scripts/make_fitzhugh_nagumo.py --noise 0.05 --seed 0
"""

import argparse
import pathlib

import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp

TRUTH = {"a": 0.7, "b": 0.8, "tau": 12.5, "I_ext": 0.5}
INITIAL_STATE = (-1.0, 1.0)
TIMES = np.arange(0.0, 80.0 + 1e-9, 0.5)


def fitzhugh_nagumo(times, noise, seed):
    """A noisy FitzHugh–Nagumo recording as a Dataset with dims (sweep, time)."""

    def vector_field(t, y):
        v, w = y
        dv = v - v**3 / 3.0 - w + TRUTH["I_ext"]
        dw = (v + TRUTH["a"] - TRUTH["b"] * w) / TRUTH["tau"]
        return [dv, dw]

    solution = solve_ivp(
        vector_field,
        (times[0], times[-1]),
        INITIAL_STATE,
        t_eval=times,
        rtol=1e-10,
        atol=1e-10,
    )
    rng = np.random.default_rng(seed)
    observed = solution.y + noise * rng.standard_normal(solution.y.shape)
    variables = {
        name: (("sweep", "time"), observed[i][None], {"units": "1", "role": "observed"})
        for i, name in enumerate(("v", "w"))
    }
    return xr.Dataset(
        variables,
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
        attrs={
            "source": "synthetic: data/scripts/make_fitzhugh_nagumo.py",
            "truth": str(TRUTH),
            "noise_sd": noise,
            "seed": seed,
            "license": "CC0-1.0",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", type=pathlib.Path, default="data/synthetic/fitzhugh_nagumo.nc"
    )
    arguments = parser.parse_args()
    recording = fitzhugh_nagumo(TIMES, arguments.noise, arguments.seed)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    recording.to_netcdf(arguments.output)


if __name__ == "__main__":
    main()
