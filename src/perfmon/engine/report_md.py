"""report.md: the snapshot report as Markdown, rendered from report.json's data alone.

``render_markdown`` renders ``perfmon.engine.report.build_report``'s dict (a perfmon-report
version 1), one section per function (``SECTIONS``: the verdict and run, the gates, the
sessions, the machine, the metrics, the malformed lines, the comparison, the result tables, the
profiles, the hosts, the recording, the provenance and the method), each taking the report and
returning its Markdown lines. Gate values, intervals and limits are shown in the unit the gate's
parser gave them (``unit``/``rate`` of each gate: ``perfmon.core.gates.format_gate_value``); no
gate text is parsed here.

This module imports nothing of ``perfmon.engine.report`` (which imports it) nor of the exporters
(which render ``md`` with it), so that report, exporters and Markdown form no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from perfmon.core.gates import format_gate_value
from perfmon.core.model import Dimension
from perfmon.core.units import format_duration, format_metric, format_quantity
from perfmon.engine.compare import render_comparison_md
from perfmon.engine.flame_export import render_profiles_md
from perfmon.engine.recorded import HOST_SEPARATOR
from perfmon.engine.tables import render_tables_md

__all__ = [
    "GATE_CHANGES_SHOWN",
    "NO_DATA",
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "SECTIONS",
    "SESSIONS_SHOWN",
    "hosts_lines",
    "render_markdown",
]

MEMORY_NOTE = (
    "Peak RSS is the sum of the resident set sizes of a session's process tree: pages shared "
    "between its processes (a forked worker pool's copy-on-write heap, shared libraries) are "
    "counted once per process, so for a multi-process session it overstates the footprint. "
    "session_peak_pss_bytes (proportional set size: each shared page split among the processes "
    "mapping it) and session_peak_uss_bytes (unique set size: pages private to each process), "
    "in the metric table, do not double-count; they are read from /proc/<pid>/smaps_rollup "
    "often in a session's first second, then at most once a second (less often for large trees, "
    "so that reading stays under 1% of the wall time), so a spike between reads can be missed."
)
"""What the memory figures are (issue 10 point 6); in report.json as ``method.peak_rss_bytes``."""


REPORT_FORMAT = "perfmon-report"


REPORT_VERSION = 1


NO_DATA = "no data"


def hosts_lines(section: Mapping[str, Any] | None) -> list[str]:
    """The report.md lines of ``hosts_section`` (none for a local run)."""
    if not section:
        return []
    out = ["## Hosts", ""]
    n = section["fingerprints"]
    out.append(
        f"{len(section['hosts'])} host(s), {n} distinct host fingerprint(s)"
        + (": comparisons across them mix instruments." if n > 1 else ".")
    )
    out.append("")
    if section.get("pooled"):
        out += [
            f"Gates and result tables pooled over {len(section['hosts'])} hosts with {n} "
            "distinct fingerprints, as the campaign asked (`[executor] allow_mixed_hosts = "
            "true`): their numbers mix instruments.",
            "",
        ]
    elif section.get("per_host"):
        out += [
            "Gates and result tables are judged per host (each set on each host); comparisons "
            "never pool sessions of different hosts.",
            "",
        ]
    for h in section["hosts"]:
        out += [f"### {h['host']}", ""]
        for fp in h["fingerprints"]:
            out.append(f"- fingerprint: `{fp}`")
        status = ", ".join(f"{k} {v}" for k, v in h["by_status"].items())
        out += [f"- sessions: {status}", ""]
        if h["groups"]:
            out += _table(
                ["Workload", "Variant", "Params", "n", "Median", "MAD", "p95", "Min", "Max"],
                (
                    [
                        g["workload"],
                        g["variant"],
                        g["params"] or "–",
                        *_stats_cells(g["wall_s"], Dimension.TIME),
                    ]
                    for g in h["groups"]
                ),
            )
            out.append("")
    return out


def params_text(params: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted((params or {}).items()))


def _stop_when_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for e in entries:
        saved_s = e.get("seconds_saved")
        time_text = "" if saved_s is None else f", about {format_duration(saved_s)}"
        if "planned" in e:
            out.append(
                f"- Set {e['set']} stopped when decided: {e['ran']} of {e['planned']} planned "
                f"measured sessions, {e['sessions_saved']} saved{time_text} "
                "(at the set's mean session wall time)."
            )
        else:
            out.append(
                f"- Set {e['set']} stopped when decided after {e['ran']} measured sessions"
                f"{time_text} before its planned duration."
            )
    return [*out, ""] if out else []


BUSY_SESSIONS_SHOWN = 40
"""report.md lists at most this many busy sessions (the busiest); report.json has all."""


def _machine_lines(machine: Mapping[str, Any] | None) -> list[str]:
    """The "Machine" Markdown section: the busy sessions, busiest first."""
    if not machine or not machine.get("busy_sessions"):
        return []
    rows = sorted(machine["busy_sessions"], key=lambda b: -(b["background_share"] or 0.0))
    out = ["## Sessions on a busy machine", ""]
    if len(rows) > BUSY_SESSIONS_SHOWN:
        out += [f"The busiest {BUSY_SESSIONS_SHOWN} of {len(rows)} (all in report.json).", ""]
        rows = rows[:BUSY_SESSIONS_SHOWN]

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{x * 100:.1f}%"

    out += _table(
        (
            "Session",
            "Workload",
            "Variant",
            "Params",
            "Background CPU",
            "Limit",
            "Steal",
            "Load",
            "Wall",
            "CPU",
            "Kept",
        ),
        (
            [
                b["id"],
                b["workload"],
                b["variant"],
                params_text(b["params"]) or "–",
                pct(b["background_share"]),
                pct(b["limit_share"]),
                pct(b["steal_share"]),
                "–" if b["load1"] is None else f"{b['load1']:.2f}",
                _fmt(b["wall_s"], Dimension.TIME),
                _fmt(b["cpu_s"], Dimension.TIME),
                "no: repeated" if b["repeated"] else "yes",
            ]
            for b in rows
        ),
    )
    return [*out, ""]


GATE_CHANGES_SHOWN = 40
"""The report.md lists at most this many gate changes (the latest); report.json has all."""


def _gate_changes_lines(section: Mapping[str, Any] | None) -> list[str]:
    """The "Gate changes" Markdown lines: time since start, gate, old -> new."""
    changes = list((section or {}).get("changes") or [])
    out = ["## Gate changes", ""]
    if not changes:
        return [*out, "No gate changed state while the run was watched live.", ""]
    if len(changes) > GATE_CHANGES_SHOWN:
        out += [f"The latest {GATE_CHANGES_SHOWN} of {len(changes)} (all in events.jsonl).", ""]
        changes = changes[-GATE_CHANGES_SHOWN:]
    rows = [
        (format_duration(max(0.0, c["since_start_s"])), c["gate"], f"{c['old']} -> {c['new']}")
        for c in changes
    ]
    out += _table(("since start", "gate", "change"), rows)
    dropped = int((section or {}).get("dropped_lines") or 0)
    if dropped:
        out += ["", f"{dropped} undecodable line(s) of events.jsonl skipped (a torn tail)."]
    return [*out, ""]


def _gate_table(gates: Sequence[Mapping[str, Any]]) -> list[str]:
    """The gate table's Markdown lines (a "no gates" line when there are none)."""
    out: list[str] = []
    if gates:
        rows = []
        for g in gates:
            fmt = _gate_fmt(g)
            ci = (
                _interval(g.get("ci_low"), g.get("ci_high"), fmt)
                if g["ci_low"] is not None or g["ci_high"] is not None
                else "–"
            )
            rows.append(
                [
                    g["name"],
                    f"`{g['expr']}`",
                    g["state"].upper(),
                    fmt(g["value"]),
                    ci,
                    f"{g['n']:,}",
                    g["reason"],
                ]
            )
            rows += _group_rows(g, fmt)
        out += _table(["Gate", "Expression", "State", "Value", "CI", "n", "Reason"], rows)
    else:
        out.append("No gates defined.")
    return out


def _metrics_by_labels_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The "Metrics by workload and variant" Markdown section (empty when nothing splits)."""
    if not rows:
        return []
    out = [
        "## Metrics by workload and variant",
        "",
        "Each metric emitted under more than one label combination, split by the labels gates "
        'select on (`{workload="...", variant="...", MATRIX_KEY="..."}`), over measured '
        "sessions' samples.",
        "",
    ]
    table = []
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())
        table.append(
            [r["metric"], r["workload"], r["variant"], params or "–", f"{r['n']:,}"]
            + [_fmt_metric(r[k], r["metric"]) for k in ("median", "p95", "max")]
        )
    out += _table(["Metric", "Workload", "Variant", "Matrix", "n", "Median", "p95", "Max"], table)
    return [*out, ""]


def _group_rows(g: Mapping[str, Any], fmt: Callable[[float | None], str]) -> list[list[str]]:
    """One indented table row per group of a gate judged per group (``by`` or per session
    group), so the report shows every group's value and state, not only the deciding one."""
    rows = []
    groups = g.get("groups") or []
    if len(groups) < 2:
        return []
    for gr in groups:
        ci = (
            _interval(gr.get("ci_low"), gr.get("ci_high"), fmt)
            if gr.get("ci_low") is not None or gr.get("ci_high") is not None
            else "–"
        )
        rows.append(
            [
                f"↳ {gr['label']}",
                "(group)",
                str(gr["state"]).upper(),
                fmt(gr.get("value")),
                ci,
                f"{gr.get('n', 0):,}",
                str(gr.get("reason", "")),
            ]
        )
    return rows


def _gate_fmt(g: Mapping[str, Any]) -> Callable[[float | None], str]:
    """How a gate's value, interval and threshold read, in the unit its parser gave
    (``unit`` and ``rate`` of ``_gate_json``; ``perfmon.core.gates.format_gate_value``). A
    report written before gates carried their unit shows plain numbers."""
    unit, rate = str(g.get("unit") or ""), bool(g.get("rate"))
    func, metrics = str(g.get("func") or ""), list(g.get("metrics") or [])
    metric = str(metrics[0]) if len(metrics) == 1 else ""

    def fmt(value: float | None) -> str:
        return NO_DATA if value is None else format_gate_value(value, unit, rate, func, metric)

    return fmt


def _cell(x: Any) -> str:
    text = NO_DATA if x is None or x == "" else str(x)
    return text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _fmt(value: float | None, dim: Dimension) -> str:
    return NO_DATA if value is None else format_quantity(value, dim)


def _interval(low: Any, high: Any, fmt: Callable[[float | None], str]) -> str:
    """A gate's interval, ``[1.3x, 1.5x]``. A bound that JSON could not carry (an anytime-valid
    sequence still unbounded: report.json stores it as null beside a finite other bound) reads
    ``-∞`` / ``∞``, not "no data"."""
    lo = "-∞" if low is None else fmt(low)
    hi = "∞" if high is None else fmt(high)
    return f"[{lo}, {hi}]"


def _fmt_metric(value: float | None, metric: str) -> str:
    """A value in its metric's unit, rates humanised (``format_metric``: ``92.7 MB/s``)."""
    return NO_DATA if value is None else format_metric(value, metric)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _stats_cells(stats: dict[str, Any], dim: Dimension) -> list[str]:
    return [str(stats["n"])] + [_fmt(stats[k], dim) for k in ("median", "mad", "p95", "min", "max")]


SESSIONS_SHOWN = 200
"""Most rows of a per-session table in report.md (failed sessions, malformed lines), so that a
long soak's report stays readable and bounded; report.json keeps every row."""


def _more_lines(total: int, what: str) -> list[str]:
    """The note under a table cut at ``SESSIONS_SHOWN`` rows ([] when it was not cut)."""
    if total <= SESSIONS_SHOWN:
        return []
    return ["", f"... and {total - SESSIONS_SHOWN:,} more {what} (every one is in report.json)."]


def _head_lines(report: Mapping[str, Any]) -> list[str]:
    """The title, the verdict, any damage, the machine line and the run's time span."""
    title = report.get("campaign") or report.get("run_id")
    out = [f"# perfmon report: {title}", ""]
    out += [f"**Verdict: {report['verdict_line']}**", ""]
    out += _damage_lines(report.get("recording") or {})
    machine = report.get("machine")
    if isinstance(machine, Mapping) and machine.get("line"):
        out += [str(machine["line"]), ""]
    timing = report["timing"]
    out.append(f"- Run: `{report['run_id']}` in `{report['run_dir']}`")
    out.append(f"- Started: {timing['started_utc'] or NO_DATA}")
    out.append(
        f"- Ended: {timing['ended_utc'] or NO_DATA}"
        + (" (last recorded session or sample)" if timing["ended_utc"] else "")
    )
    duration = timing["duration_s"]
    out.append(
        f"- Duration: {NO_DATA if duration is None else format_duration(duration)}"
        + ("" if duration is None else f" ({duration:.1f} s)")
    )
    return [*out, ""]


def _gates_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Gates``: the rule, the inference line, stop-when decisions, the whole-run gate
    table, one table per set, then the gate changes."""
    out = ["## Gates", ""]
    if report.get("verdict_rule"):
        out += [f"Rule: {report['verdict_rule']}.", ""]
    if isinstance(report.get("inference"), Mapping):
        out += [str(report["inference"]["line"]), ""]
    out += _stop_when_lines(report.get("stop_when") or [])
    by_set = report.get("gates_by_set") or {}
    per_host = report.get("gate_groups") == "set and host"
    if per_host:
        out.append(
            "Sessions ran on several hosts: each set is judged on its own host's sessions "
            "(a baseline/candidate comparison only between sessions of one host, and the "
            "machine-wide samples recorded while they ran); a gate's whole-run state is its "
            "worst state over the sets and hosts."
        )
        out.append("")
    elif by_set:
        out.append(
            "Each set is judged on its own sessions (and the machine-wide samples recorded "
            "while it ran); a gate's whole-run state is its worst state over the sets."
        )
        out.append("")
    out += _gate_table(report["gates"])
    for set_name, gates in by_set.items():
        if per_host and HOST_SEPARATOR in set_name:
            name, host = set_name.split(HOST_SEPARATOR, 1)
            out += [f"### Set {name} on host {host}", ""]
        else:
            out += [f"### Set {set_name}", ""]
        out += _gate_table(gates)
    out.append("")
    return out + _gate_changes_lines(report.get("gate_changes"))


def _sessions_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Sessions``: counts by status, wall time and peak RSS per group, failed sessions."""
    ses = report["sessions"]
    out = ["## Sessions", ""]
    if ses["total"]:
        out.append(f"{ses['total']} sessions finished, {ses['warmup']} of them warm-ups.")
        out.append("")
        out += _table(["Status", "Sessions"], sorted(ses["by_status"].items()))
    else:
        out.append(f"Sessions: {NO_DATA}.")
    out.append("")
    out += _session_stats_lines(ses["groups"])
    return out + _failed_lines(ses["failed"])


def _session_stats_lines(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """Wall time and peak RSS of measured sessions, per workload, variant and params."""
    out: list[str] = []
    stat_header = ["Workload", "Variant", "Params", "n", "Median", "MAD", "p95", "Min", "Max"]
    for title, key, dim in (
        ("Wall time of measured sessions", "wall_s", Dimension.TIME),
        ("Peak RSS of measured sessions", "peak_rss_bytes", Dimension.BYTES),
    ):
        out += [f"### {title}", ""]
        if groups:
            out += _table(
                stat_header,
                (
                    [
                        gr["workload"],
                        gr["variant"],
                        params_text(gr["params"]) or "–",
                        *_stats_cells(gr[key], dim),
                    ]
                    for gr in groups
                ),
            )
        else:
            out.append(f"Measured sessions (status ok, not warm-up): {NO_DATA}.")
        out.append("")
        if key == "peak_rss_bytes":
            out += [MEMORY_NOTE, ""]
    return out


def _failed_lines(failed: Sequence[Mapping[str, Any]]) -> list[str]:
    """``### Failed sessions`` (at most ``SESSIONS_SHOWN`` rows)."""
    out = ["### Failed sessions", ""]
    if failed:
        out += _table(
            ["Session", "Workload", "Variant", "Params", "Warm-up", "Status", "Error"],
            (
                [
                    f["id"],
                    f["workload"],
                    f["variant"],
                    params_text(f["params"]) or "–",
                    "yes" if f["warmup"] else "no",
                    f["status_text"],
                    f["error"] or "–",
                ]
                for f in failed[:SESSIONS_SHOWN]
            ),
        )
        out += _more_lines(len(failed), "failed sessions")
    else:
        out.append("None: every finished session exited with status ok.")
    return [*out, ""]


def _machine_section(report: Mapping[str, Any]) -> list[str]:
    """``## Machine``: how quiet it was, the busiest sessions."""
    return _machine_lines(report.get("machine"))


def _metrics_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Metrics``: the caps' drops, one row per metric, then the split by labels."""
    out = [
        "## Metrics",
        "",
        "Samples of warm-up sessions and of repeated noisy attempts are excluded.",
        "",
    ]
    caps = report.get("metric_caps") or {}
    if caps.get("dropped_samples"):
        out += [
            f"**Metric-name caps: {caps['text']}.** At most {caps['max_metrics']:,} distinct "
            f"names per run and {caps['max_metric_name_bytes']:,} bytes per name are kept "
            "(`max_metrics`, `max_metric_name_bytes`); the counts are recorded as "
            "`perfmon_dropped_samples_total` and `perfmon_dropped_metric_names`.",
            "",
        ]
    if report["metrics"]:
        rows = []
        for m in report["metrics"]:
            counter = m["kind"] == "counter"
            # A counter's samples are increments: its total says what it counted, while the
            # median, p95 and max of its increments (often 1) say nothing (issue 14).
            rows.append(
                [m["name"], m["kind"], f"{m['n']:,}"]
                + [
                    "–" if counter else _fmt_metric(m[k], m["name"])
                    for k in ("min", "median", "p95", "max", "last")
                ]
                + [_fmt_metric(m["total"], m["name"]) if counter else "–"]
            )
        out += _table(["Metric", "Kind", "n", "Min", "Median", "p95", "Max", "Last", "Total"], rows)
    else:
        out.append(f"Metrics: {NO_DATA}.")
    out.append("")
    return out + _metrics_by_labels_lines(report.get("metrics_by_labels") or [])


def _malformed_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Malformed probe lines``: the total, and the sessions that sent them."""
    mal = report["malformed"]
    out = ["## Malformed probe lines", ""]
    out.append(f"Total: {mal['total']:,} line(s) dropped.")
    if mal["sessions"]:
        out.append("")
        out += _table(
            ["Session", "Workload", "Variant", "Malformed lines"],
            (
                [r["id"], r["workload"], r["variant"], f"{r['malformed']:,}"]
                for r in mal["sessions"][:SESSIONS_SHOWN]
            ),
        )
        out += _more_lines(len(mal["sessions"]), "sessions with malformed lines")
    return [*out, ""]


TABLE_KINDS_COVERING = ("ratio", "values")
"""Result-table kinds that show a metric's comparison across variants: its ratio pivot, or its
values (one-off, direction-less and constant metrics, which are shown as values, not ratios)."""


def _covered(tables: Any) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    """``(set, workload, metric)`` shown by a covering result table, and the (set, workload)
    pairs that have any table (a damaged ``tables`` entry covers nothing)."""
    shown: set[tuple[str, str, str]] = set()
    places: set[tuple[str, str]] = set()
    listed = tables.get("tables") if isinstance(tables, Mapping) else None
    for t in listed if isinstance(listed, list) else ():
        if not isinstance(t, Mapping):
            continue
        where = (str(t.get("set", "")), str(t.get("workload", "")))
        places.add(where)
        if t.get("kind") not in TABLE_KINDS_COVERING:
            continue
        listed_metrics = t.get("metrics")
        names: list[Any] = listed_metrics if isinstance(listed_metrics, list) else [t.get("metric")]
        shown.update((*where, str(m)) for m in names if m)
    return shown, places


def comparison_beside_tables(report: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The comparison rows (``report["comparison"]["rows"]``) that the result tables do not show.

    The result tables (``perfmon.engine.tables``) give every variant x matrix value of a metric
    its ratio (or, for one-off and direction-less metrics, its values) in one pivot; the old
    comparison rows, one per metric x group x variant against the first variant, repeat them.
    A row is shown by the tables when a ``ratio`` or ``values`` table of the row's set,
    workload and metric is in ``report["tables"]`` (tables left out by ``MAX_TABLES`` show
    nothing, so their rows stay). report.json keeps every row; ``perfmon compare`` is unchanged.

    Args:
        report: ``build_report``'s dict (``comparison`` and ``tables`` may be absent).

    Returns:
        ``(rows the tables do not show, how many rows they do show)``.
    """
    section = report.get("comparison")
    rows = section.get("rows") if isinstance(section, Mapping) else None
    if not isinstance(rows, list):
        return [], 0
    shown, places = _covered(report.get("tables"))
    if not shown:
        return list(rows), 0
    keep: list[dict[str, Any]] = []
    for r in rows:
        group, metric = str(r.get("group", "")), str(r.get("metric", ""))
        hit = any(
            (s, w, metric) in shown and (group == f"{s} {w}" or group.startswith(f"{s} {w} "))
            for s, w in places
        )
        if not hit:
            keep.append(r)
    return keep, len(rows) - len(keep)


def _comparison_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Comparison`` (``perfmon.engine.compare.render_comparison_md``), when there is one,
    folded to the metrics the result tables do not show (``comparison_beside_tables``)."""
    section = report.get("comparison")
    if not section:
        return []
    rows, shown = comparison_beside_tables(report)
    if not shown:
        return render_comparison_md(section)
    where = (
        f"The result tables below show {shown:,} of the run's {shown + len(rows):,} comparison "
        "rows (each variant against "
        f"`{section.get('baseline') or 'the first variant'}` per set, workload, matrix value and "
        "metric); report.json keeps every row under `comparison`, and `perfmon compare` prints "
        "them in this shape."
    )
    if not rows:
        return ["## Comparison", "", where, ""]
    out = render_comparison_md({**section, "rows": rows})
    out[0] = "## Comparison: metrics the result tables do not show"
    return [out[0], "", where, *out[1:]]


def _tables_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Result tables`` (``perfmon.engine.tables.render_tables_md``), when there are any."""
    return render_tables_md(report["tables"]) if report.get("tables") else []


def _profiles_lines(report: Mapping[str, Any]) -> list[str]:
    """The py-spy profiles (``perfmon.engine.flame_export.render_profiles_md``), if any."""
    return render_profiles_md(report["profiles"]) if report.get("profiles") else []


def _hosts_section(report: Mapping[str, Any]) -> list[str]:
    """``## Hosts`` of a run on several hosts (``hosts_lines``)."""
    return hosts_lines(report.get("hosts"))


def _recording_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Recording``: samples read, repairs, dropped lines and problems."""
    rec = report["recording"]
    out = ["## Recording", ""]
    out.append(
        f"- {rec['samples']:,} samples, read from "
        + ("samples.parquet (run closed)" if rec["closed"] else "segments (run not closed)")
    )
    out.append(
        f"- Repaired segments: {rec['repaired_segments']}, "
        f"{rec['samples_dropped_bytes']:,} bytes of torn tails dropped"
    )
    out.append(f"- Undecodable session lines dropped: {rec['sessions_dropped_lines']}")
    for p in rec["problems"]:
        out.append(f"- Problem: {p}")
    if not rec["problems"]:
        out.append("- No damage found.")
    return [*out, ""]


def _provenance_section(report: Mapping[str, Any]) -> list[str]:
    """``## Provenance``: git commit, host, OS, CPU, RAM, Python and packages."""
    out = ["## Provenance", ""]
    prov = report.get("provenance")
    if isinstance(prov, dict) and prov:
        out += _provenance_lines(prov)
    else:
        out.append(f"Provenance: {NO_DATA}.")
    return [*out, ""]


def _method_lines(report: Mapping[str, Any]) -> list[str]:
    """``## Method``: how every figure was computed."""
    return ["## Method", "", *(f"- {k}: {v}" for k, v in report["method"].items()), ""]


SECTIONS: tuple[Callable[[Mapping[str, Any]], list[str]], ...] = (
    _head_lines,
    _gates_lines,
    _sessions_lines,
    _machine_section,
    _metrics_lines,
    _malformed_lines,
    _comparison_lines,
    _tables_lines,
    _profiles_lines,
    _hosts_section,
    _recording_lines,
    _provenance_section,
    _method_lines,
)
"""report.md's sections in order: each takes the report dict and returns its lines."""


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render ``build_report``'s dict as Markdown (plain pipe tables), section by section
    (``SECTIONS``).

    Args:
        report: a ``perfmon-report`` version 1 dict.

    Returns:
        The Markdown text, ending with a newline.

    Raises:
        ValueError: if ``report`` is not a version 1 perfmon report.
    """
    if report.get("format") != REPORT_FORMAT or report.get("version") != REPORT_VERSION:
        raise ValueError("not a perfmon-report version 1")
    out: list[str] = []
    for section in SECTIONS:
        out += section(report)
    return "\n".join(out)


def _damage_lines(rec: Mapping[str, Any]) -> list[str]:
    """The "Damage found" section (nothing when the recording read back intact)."""
    problems = list(rec.get("problems") or [])
    if not problems:
        return []
    out = ["## Damage found", ""]
    if rec.get("data_lost"):
        out.append(
            "Parts of this run's files were damaged or unreadable; what could not be read was "
            "left out, so the numbers below cover only what was read, and the verdict cannot be "
            "vouched for."
        )
    else:
        out.append(
            "A file ended in a torn tail, as a crash (kill -9) leaves it: at most the last "
            "flush was lost; everything before it was read."
        )
    out.append("")
    counts = [
        f"{len(problems)} problem(s)",
        f"{int(rec.get('damaged_batches') or 0):,} damaged batch(es) or row group(s) skipped",
        f"{int(rec.get('samples_lost') or 0):,} samples known lost",
        f"{int(rec.get('repaired_segments') or 0)} segment(s) repaired",
        f"{int(rec.get('samples_dropped_bytes') or 0):,} bytes of segments dropped",
        f"{int(rec.get('sessions_dropped_lines') or 0)} session line(s) dropped",
    ]
    out.append("- " + "; ".join(counts))
    out += [f"- {_cell(p)}" for p in problems[:50]]
    if len(problems) > 50:
        out.append(f"- ... and {len(problems) - 50} more (all in report.json)")
    return [*out, ""]


def _provenance_lines(prov: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    git = prov.get("git")
    if isinstance(git, dict):
        if git.get("commit"):
            dirty = " (dirty work tree)" if git.get("dirty") else ""
            lines.append(f"- Git commit: `{git['commit']}`{dirty}")
        else:
            lines.append("- Git commit: not a git repository, or git unavailable")
    ram = prov.get("ram_total_bytes")
    simple = [
        ("perfmon", prov.get("perfmon_version")),
        ("Host", prov.get("hostname")),
        ("OS", prov.get("os")),
        ("CPU", prov.get("cpu_model")),
        (
            "CPUs (logical / physical)",
            f"{prov.get('cpu_count_logical')} / {prov.get('cpu_count_physical')}"
            if "cpu_count_logical" in prov
            else None,
        ),
        ("RAM", format_quantity(ram, Dimension.BYTES) if isinstance(ram, int | float) else None),
        (
            "Python",
            f"{prov.get('python_version')} ({prov.get('python_implementation')})"
            if prov.get("python_version")
            else None,
        ),
        ("Started (UTC)", prov.get("started_utc")),
    ]
    lines += [f"- {k}: {v}" for k, v in simple if v not in (None, "")]
    packages = prov.get("packages")
    if isinstance(packages, dict) and packages:
        listed = ", ".join(f"{k} {v or 'not installed'}" for k, v in packages.items())
        lines.append(f"- Packages: {listed}")
    return lines
