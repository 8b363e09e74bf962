"""bayesude against its peers on the same fits, side by side; run by ``make bench``.

Variants and peers (see ``reference_problem.py`` for the problem):

- ``reference``: FitzHugh–Nagumo, unknown a, b, tau and two noise scales —
  bayesude, Stan (PyStan), NumPyro + Diffrax, NumPyro + ``odeint``;
- ``ude``: the cubic term replaced by a 1 → 4 → 1 tanh network — bayesude and
  NumPyro + Diffrax;
- ``batch``: several subjects with their own parameters — bayesude fitting
  them one after another, and NumPyro + Diffrax fitting all of them vmapped
  in one program.

Each peer runs in its own process, one after another, with the persistent
compilation cache off, so compile times are cold and peak memory is the
peer's own. Every run writes ``results/bench/<variant>.jsonl`` (one JSON line
per peer) and prints the ratios bayesude / peer. Timings on a shared machine
are noisy: compare the ratios of one run, not absolute times across runs.

Usage: ``python benchmarks/bench.py [--quick] [--variants reference ude batch]
[--peers ...] [--output results/bench]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PEERS = {
    "reference": ("bayesude", "stan", "numpyro_diffrax", "numpyro_odeint"),
    "ude": ("bayesude", "numpyro_diffrax"),
    "batch": ("bayesude", "numpyro_diffrax_vmapped"),
}
#: Columns of the printed table: field, heading, format.
COLUMNS = (
    ("ms_per_gradient", "ms/grad", "{:.3f}"),
    ("min_bulk_ess", "bulk ESS", "{:.0f}"),
    ("min_tail_ess", "tail ESS", "{:.0f}"),
    ("ess_per_s", "ESS/s", "{:.2f}"),
    ("ess_per_s_with_compile", "ESS/s+c", "{:.2f}"),
    ("compile_s", "compile s", "{:.1f}"),
    ("max_rhat", "R-hat", "{:.3f}"),
    ("divergences", "div", "{:d}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
)
#: Peer processes that run longer than this are stopped and reported as failed.
PEER_TIMEOUT_S = 3600


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.peer:
        _run_one_peer(arguments)
        return 0

    output = pathlib.Path(arguments.output)
    failed = False
    for variant in arguments.variants:
        records = []
        for peer in PEERS[variant]:
            if arguments.peers and peer not in arguments.peers:
                continue
            record = _peer_in_subprocess(peer, variant, arguments.quick)
            failed |= "error" in record
            records.append(record)
            print(_one_line(record), flush=True)
        _write_lines(output / f"{variant}.jsonl", records)
        print(ratio_table(variant, records), flush=True)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes (smoke run)")
    parser.add_argument(
        "--variants", nargs="+", choices=tuple(PEERS), default=list(PEERS)
    )
    parser.add_argument("--peers", nargs="+", help="only these peers")
    parser.add_argument("--output", default="results/bench")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    return parser


def _peer_in_subprocess(peer: str, variant: str, quick: bool) -> dict:
    """Run one peer in a fresh process; its record, or one saying why it failed."""
    with tempfile.TemporaryDirectory() as folder:
        record_file = pathlib.Path(folder) / "record.json"
        command = [
            sys.executable,
            str(HERE / "bench.py"),
            "--peer",
            peer,
            "--variant",
            variant,
            "--record",
            str(record_file),
        ] + (["--quick"] if quick else [])
        environment = {**os.environ, "BAYESUDE_COMPILATION_CACHE": ""}
        try:
            finished = subprocess.run(
                command,
                env=environment,
                capture_output=True,
                text=True,
                timeout=PEER_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return {"peer": peer, "variant": variant, "error": "timed out"}
        if finished.returncode != 0 or not record_file.exists():
            tail = (finished.stderr or finished.stdout).strip().splitlines()[-5:]
            return {"peer": peer, "variant": variant, "error": " | ".join(tail)}
        return json.loads(record_file.read_text())


def _run_one_peer(arguments) -> None:
    from peers import run_peer

    size_name = "quick" if arguments.quick else "full"
    record = run_peer(arguments.peer, arguments.variant, size_name)
    pathlib.Path(arguments.record).write_text(json.dumps(record))


def _write_lines(path: pathlib.Path, records: list[dict]) -> None:
    from bayesude.files import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text("".join(json.dumps(r) + "\n" for r in records))


def _one_line(record: dict) -> str:
    if "error" in record:
        return f"{record['variant']:9s} {record['peer']:24s} FAILED: {record['error']}"
    cells = [heading + " " + fmt.format(record[f]) for f, heading, fmt in COLUMNS]
    return f"{record['variant']:9s} {record['peer']:24s} " + ", ".join(cells)


def ratio_table(variant: str, records: list[dict]) -> str:
    """Printed ratios bayesude / peer for the timing and efficiency fields."""
    ours = next((r for r in records if r["peer"] == "bayesude"), None)
    if ours is None or "error" in ours:
        return f"{variant}: no bayesude result, no ratios."
    lines = [f"{variant}: bayesude / peer"]
    for peer in records:
        if peer is ours or "error" in peer:
            continue
        ratios = ", ".join(
            f"{field} {_ratio(ours[field], peer[field])}"
            for field in ("ms_per_gradient", "ess_per_s", "ess_per_s_with_compile")
        )
        agree = _means_agree(ours, peer)
        lines.append(f"  vs {peer['peer']:24s} {ratios}; posterior means {agree}")
    return "\n".join(lines)


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def _means_agree(ours: dict, theirs: dict) -> str:
    """Whether posterior means agree within 4 Monte Carlo standard errors."""
    worst = 0.0
    for name, mean in ours["posterior_mean"].items():
        if name not in theirs["posterior_mean"]:
            continue
        difference = np.abs(np.subtract(mean, theirs["posterior_mean"][name]))
        sd = np.asarray(ours["posterior_sd"][name])
        ess = min(ours["min_bulk_ess"], theirs["min_bulk_ess"])
        standard_error = sd * np.sqrt(2.0 / max(ess, 1.0))
        worst = max(
            worst, float(np.max(difference / np.maximum(standard_error, 1e-12)))
        )
    verdict = "agree" if worst < 4.0 else "DISAGREE"
    return f"{verdict} (largest difference {worst:.1f} Monte Carlo SE)"


if __name__ == "__main__":
    sys.exit(main())
