"""Convert the Hudson's Bay hare–lynx CSV into the data convention (NetCDF).

Reads ``data/benchmarks/hudson_bay_lynx_hare_1900_1920.csv`` (columns year,
hare_thousands, lynx_thousands) and writes ``hudson_bay_lynx_hare_1900_1920.nc``
beside it: variables ``hare`` and ``lynx`` with dimensions (sweep, time), in
thousands of pelts, role ``observed``, and time in years since 1900. Run from
the repository root:

    python data/scripts/lynx_hare_to_netcdf.py
"""

import pathlib

import pandas as pd
import xarray as xr

SOURCE = pathlib.Path("data/benchmarks/hudson_bay_lynx_hare_1900_1920.csv")
FIRST_YEAR = 1900


def main() -> None:
    table = pd.read_csv(SOURCE)
    years = table["year"].to_numpy(dtype=float) - FIRST_YEAR
    variables = {
        name: (
            ("sweep", "time"),
            table[f"{name}_thousands"].to_numpy(dtype=float)[None],
            {"units": "thousands", "role": "observed"},
        )
        for name in ("hare", "lynx")
    }
    dataset = xr.Dataset(
        variables,
        coords={
            "sweep": [0],
            "time": ("time", years, {"units": "year", "origin": "1900"}),
        },
        attrs={
            "source": "https://github.com/stan-dev/example-models, "
            "knitr/lotka-volterra/hudson-bay-lynx-hare.csv",
            "source_commit": "3057930df98f3fe54ee32b1d6736a97ac0012ab6",
            "license": "BSD-3-Clause (repository licence); historical records",
            "conversion": "data/scripts/lynx_hare_to_netcdf.py",
        },
    )
    dataset.to_netcdf(SOURCE.with_suffix(".nc"))


if __name__ == "__main__":
    main()
