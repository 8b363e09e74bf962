"""Discovery records turned into plain strings for the report's discovery section.

The template ``templates/discovery_section.html`` renders one record; the
report includes it in the section of the record's subject.
"""

from __future__ import annotations

import math
import pathlib

from bayesude.symbolic.pipeline import load_discoveries


def discovery_context(results_dir: pathlib.Path) -> list[dict]:
    """One formatted dict per discovery record in ``results_dir/discovery``."""
    return [_section(record) for record in load_discoveries(results_dir)]


def _number(value, digits: int = 3) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.{digits}g}"


def _section(record: dict) -> dict:
    r2 = ", ".join(f"{t}: {_number(v, 4)}" for t, v in record["median_r2"].items())
    return {
        "subject": record["subject"],
        "model": record["model"],
        "threshold": _number(record["threshold"]),
        "expression": record.get("discovered_model") or "",
        "problem": record.get("discovery_problem", ""),
        "r2": r2,
        "inclusion": [
            {
                "term": row["term"],
                "expression": row["expression"],
                "probability": f"{row['inclusion_probability']:.2f}",
                "coefficient": f"{_number(row['coefficient_median'])} "
                f"[{_number(row['coefficient_low'])}, "
                f"{_number(row['coefficient_high'])}]",
                "selected": "yes" if row["selected"] else "no",
            }
            for row in record["inclusion"]
        ],
        "sensitivity": [
            {
                "term": row["term"],
                "library": row["library"],
                "threshold": _number(row["threshold"]),
                "selected": row["selected"],
                "min_selected": _number(row["min_selected_probability"], 2),
                "max_rejected": _number(row["max_rejected_probability"], 2),
                "r2": _number(row["median_r2"], 4),
            }
            for row in record["sensitivity"]
        ],
        "training_until": _number(record.get("training_until")),
        "training_expression": record.get("training_discovered_model") or "",
        "forecast": [
            {
                "model": row["model"],
                "elpd": f"{_number(row.get('elpd_lfo'), 5)} ± "
                f"{_number(row.get('elpd_lfo_se'), 3)}",
                "scored": row.get("num_scored", "–"),
                "failed": row.get("failed_draws", "–"),
            }
            for row in record.get("leave_future_out", [])
        ],
    }
