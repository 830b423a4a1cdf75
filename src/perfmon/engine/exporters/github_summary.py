"""Markdown for GitHub Actions' job summary (``$GITHUB_STEP_SUMMARY``).

``perfmon report RUN --format github >> "$GITHUB_STEP_SUMMARY"`` shows the verdict, the gates
(per set), the failed sessions and the comparison table on the workflow run's page. GitHub
renders GitHub-flavoured Markdown there and refuses a step summary over 1 MiB
(docs.github.com, "Adding a job summary"), so tables are capped (``MAX_ROWS`` rows each, the
count of the rest given) and the whole text is kept under ``MAX_BYTES``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from perfmon.engine.exporters.common import gate_quantity

__all__ = ["MAX_BYTES", "MAX_ROWS", "render_github"]

MAX_ROWS = 50
"""Rows shown per table; the rest are counted (report.json has them all)."""

MAX_BYTES = 900 * 1024
"""The summary is cut below GitHub's 1 MiB limit per step, with a note saying so."""

_ICON = {"pass": "✅", "fail": "❌", "inconclusive": "❔", "pending": "⏳"}


def _cell(x: Any) -> str:
    text = "–" if x is None or x == "" else str(x)
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", " ")
        .replace("\r", " ")
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        out += ["", f"{len(rows) - MAX_ROWS} more row(s) in report.json."]
    return [*out, ""]


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    return f"{x:.4g}"


def _value(x: Any, row: Mapping[str, Any]) -> str:
    """A median in its metric's unit (``format_metric``: 1.5 ms, 92.7 MB/s), "–" if none."""
    from perfmon.core.units import format_metric

    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    return format_metric(float(x), str(row.get("metric")))


def _gate_rows(gates: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for g in gates:
        state = str(g.get("state"))
        ci = (
            f"[{gate_quantity(g, g.get('ci_low'))}, {gate_quantity(g, g.get('ci_high'))}]"
            if g.get("ci_low") is not None or g.get("ci_high") is not None
            else "–"
        )
        rows.append(
            [
                f"{_ICON.get(state, '')} {state.upper()}",
                g.get("name"),
                f"`{str(g.get('expr')).replace('`', '')}`",
                gate_quantity(g, g.get("value")),
                ci,
                g.get("n"),
                g.get("reason"),
            ]
        )
    return rows


def render_github(report: Mapping[str, Any]) -> str:
    """Render the job summary from ``build_report``'s dict.

    Args:
        report: a perfmon-report.

    Returns:
        GitHub-flavoured Markdown, at most ``MAX_BYTES`` bytes of UTF-8, ending with a newline.
    """
    verdict = str(report.get("verdict") or "pending")
    title = report.get("campaign") or report.get("run_id")
    out = [
        f"## {_ICON.get(verdict, '')} perfmon: {_cell(title)}",
        "",
        f"**{_cell(report.get('verdict_line'))}**",
        "",
    ]
    timing = report.get("timing") or {}
    if timing.get("started_utc"):
        out += [
            f"Run `{_cell(report.get('run_id'))}`, started {timing['started_utc']}"
            + (
                f", {timing['duration_s']:.1f} s"
                if isinstance(timing.get("duration_s"), int | float)
                else ""
            ),
            "",
        ]
    header = ["State", "Gate", "Expression", "Value", "CI", "n", "Reason"]
    by_set = report.get("gates_by_set") or {}
    if by_set:
        for set_name, gates in by_set.items():
            out += [f"### Gates, set {_cell(set_name)}", ""]
            out += _table(header, _gate_rows(gates))
    elif report.get("gates"):
        out += ["### Gates", ""]
        out += _table(header, _gate_rows(report["gates"]))
    else:
        out += ["No gates defined.", ""]

    sessions = report.get("sessions") or {}
    counts = ", ".join(f"{v} {k}" for k, v in (sessions.get("by_status") or {}).items())
    out += [f"**Sessions:** {sessions.get('total', 0)} ({counts or 'none'})", ""]
    failed = sessions.get("failed") or []
    if failed:
        out += ["<details><summary>Failed sessions</summary>", ""]
        out += _table(
            ["Session", "Workload", "Variant", "Status", "Error"],
            [
                [f.get("id"), f.get("workload"), f.get("variant"), f.get("status_text"),
                 f.get("error")]
                for f in failed
            ],
        )  # fmt: skip
        out += ["</details>", ""]

    comparison = report.get("comparison") or {}
    rows = comparison.get("rows") or []
    # Metrics with one value in every session of both sides: one line, not 1x [1, 1] rows.
    folded = [r for r in rows if r.get("constant")]
    rows = [r for r in rows if not r.get("constant")]
    if rows:
        level = (comparison.get("options") or {}).get("confidence")
        level_text = f"{level:.0%} " if isinstance(level, int | float) else ""
        out += [f"### Comparison against `{_cell(comparison.get('baseline'))}`", ""]
        out += _table(
            ["Group", "Metric", "Variant", "Baseline median", "Median", f"Speedup {level_text}CI",
             "Change", "p"],
            [
                [
                    r.get("group"), r.get("metric"), r.get("b_label"),
                    f"{_value(r.get('a_median'), r)} (n={r.get('a_n')})",
                    f"{_value(r.get('b_median'), r)} (n={r.get('b_n')})",
                    "–" if r.get("speedup") is None else
                    f"{_num(r['speedup'])}x [{_num(r.get('speedup_low'))}, "
                    f"{_num(r.get('speedup_high'))}]",
                    "–" if r.get("change") is None else f"{r['change']:+.1%}",
                    _num(r.get("p_value")),
                ]
                for r in rows
            ],
        )  # fmt: skip
    if folded:
        out += ["", "constant: " + ", ".join(
            f"{r.get('group')} {r.get('metric')} = {_value(r.get('a_median'), r)}" for r in folded
        ), ""]  # fmt: skip
    text = "\n".join(out)
    data = text.encode("utf-8")
    if len(data) > MAX_BYTES:
        cut = data[:MAX_BYTES].decode("utf-8", errors="ignore").rsplit("\n", 1)[0]
        text = cut + "\n\n_Summary cut to fit GitHub's 1 MiB limit; see report.md._"
    return text.rstrip("\n") + "\n"
