"""Parallel chains with too few devices: one warning with the fix, method recorded."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import jax, jax.numpy as jnp
    jnp.ones(3).block_until_ready()  # JAX is initialised with one CPU device
    import numpy as np, xarray as xr
    import bayesude
    times = np.linspace(0.0, 5.0, 11)
    data = xr.Dataset(
        {"y": (("sweep", "time"), (10 * np.exp(-0.5 * times))[None], {"units": "1"})},
        coords={"sweep": [0], "time": ("time", times, {"units": "1"})},
    )
    spec = bayesude.ModelSpecification(
        mechanistic="logistic_growth", observed={"y": "y"}, initial_state={"y": 10.0},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = bayesude.fit(spec, data, num_chains=4, chain_method="parallel",
                             num_warmup=20, num_samples=20, progress_bar=False,
                             num_trajectory_draws=0)
    ours = [str(w.message) for w in caught
            if issubclass(w.category, bayesude.ChainMethodWarning)]
    print(json.dumps({"warnings": ours,
                      "devices": jax.local_device_count(),
                      "used": idata.posterior.attrs["chain_method_used"],
                      "chains": idata.posterior.sizes["chain"]}))
    """
)


def test_parallel_chains_on_one_device_warn_once_and_record_the_method_used():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={"BAYESUDE_COMPILATION_CACHE": "", "PATH": "", "PYTHONPATH": sys.path[0]},
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 1
    assert len(report["warnings"]) == 1
    assert "xla_force_host_platform_device_count=4" in report["warnings"][0]
    assert report["used"] in ("sequential", "vectorized")
    assert report["chains"] == 4
