"""The side-by-side benchmark: its ratios, and a smoke run of its quick mode."""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402

FIELDS = (
    "peer",
    "ms_per_gradient",
    "min_bulk_ess",
    "min_tail_ess",
    "ess_per_s",
    "ess_per_s_with_compile",
    "compile_s",
    "max_rhat",
    "divergences",
    "peak_memory_mb",
    "posterior_mean",
)


def _record(peer, ms, ess_per_s, mean_a):
    return {
        "peer": peer,
        "ms_per_gradient": ms,
        "ess_per_s": ess_per_s,
        "ess_per_s_with_compile": ess_per_s / 2,
        "min_bulk_ess": 400.0,
        "posterior_mean": {"a": mean_a},
        "posterior_sd": {"a": 0.02},
    }


def test_ratios_are_bayesude_over_each_peer_with_agreement_of_means():
    records = [
        _record("bayesude", 0.2, 12.0, 0.700),
        _record("stan", 0.5, 6.0, 0.701),
        _record("odeint", 1.0, 3.0, 0.750),
    ]
    table = bench.ratio_table("reference", records).splitlines()
    assert table[0] == "reference: bayesude / peer"
    assert "ms_per_gradient 0.40x, ess_per_s 2.00x" in table[1]
    assert "posterior means agree (largest difference 0.7 Monte Carlo SE)" in table[1]
    assert "ess_per_s 4.00x" in table[2]
    assert "DISAGREE (largest difference 35.4 Monte Carlo SE)" in table[2]


@pytest.mark.slow
def test_quick_benchmark_writes_one_well_formed_line_per_peer(tmp_path):
    environment = {
        **os.environ,
        "PYTHONPATH": str(BENCHMARKS.parent),
        "BAYESUDE_COMPILATION_CACHE": "",
    }
    command = [sys.executable, str(BENCHMARKS / "bench.py"), "--quick"]
    command += ["--variants", "reference", "--peers", "bayesude", "numpyro_diffrax"]
    subprocess.run(command + ["--output", str(tmp_path)], check=True, env=environment)

    lines = (tmp_path / "reference.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["peer"] for r in records] == ["bayesude", "numpyro_diffrax"]
    for record in records:
        assert set(FIELDS) <= set(record)
        assert all(
            math.isfinite(record[f]) and record[f] >= 0
            for f in FIELDS
            if f not in ("peer", "posterior_mean")
        )
        assert abs(record["posterior_mean"]["a"] - 0.7) < 0.1
        assert abs(record["posterior_mean"]["tau"] - 12.5) < 2.0
