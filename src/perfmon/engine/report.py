"""The snapshot report: what ran, what was measured, which gates passed, with the evidence.

``build_report`` turns a run directory's recorded data (``perfmon.engine.recorder.RunData``) and
the gate results the runner evaluated on it into ``report.json``'s content; ``render_markdown``
renders that as ``report.md``; ``write_report`` writes both atomically.

Every number in the report is computed from recorded sessions and samples; where there is
nothing to compute from, the report says "no data" rather than print a placeholder.

Statistics (stated in the report itself, section "Method"):

- median and p95 use ``numpy.median`` and ``numpy.percentile(..., 95)`` with numpy's default
  linear interpolation (Hyndman & Fan 1996, definition 7);
- MAD is the *raw* median absolute deviation, ``scipy.stats.median_abs_deviation(x,
  scale=1.0)``, i.e. ``median(|x - median(x)|)``, not scaled to estimate a normal sigma.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import median_abs_deviation

from perfmon.core.gates import VERDICT_RULE
from perfmon.core.gates import verdict as gates_verdict
from perfmon.core.live import (
    DROPPED_NAMES_EXACT,
    DROPPED_NAMES_METRIC,
    DROPPED_SAMPLES_METRIC,
    MAX_METRIC_NAME_BYTES,
    MAX_METRICS,
)
from perfmon.core.model import GateResult, GateState
from perfmon.core.noise import (
    NOISE_BACKGROUND_SHARE,
    NOISE_BUSY,
    NOISE_LIMIT,
    NOISE_LOAD1,
    NOISE_PERFMON_S,
    NOISE_STEAL_SHARE,
    NOISE_WINDOW_S,
    summarize_noise,
)
from perfmon.core.snapshot import dropped_text
from perfmon.core.stacks import parse_collapsed
from perfmon.core.text import strip_terminal_escapes
from perfmon.engine import exporters
from perfmon.engine.compare import comparison_section
from perfmon.engine.events import read_gate_changes
from perfmon.engine.exporters import write_exports
from perfmon.engine.flame_export import profiles_section
from perfmon.engine.profiler import INDEX_FILE, PROFILES_DIR
from perfmon.engine.recorded import (
    allows_mixed_hosts,
    evaluate_recorded_safely,
    host_fingerprints,
    judged_per_host,
    metric_summaries,
    stored_stats_options,
)
from perfmon.engine.recorder import (
    MANIFEST_NAME,
    SAMPLES_DIR,
    SAMPLES_PARQUET,
    SESSIONS_JSONL,
    SESSIONS_PARQUET,
    RunData,
    atomic_write_text,
    read_run,
    run_gates,
)
from perfmon.engine.report_md import (  # the public names re-exported: they lived here before
    BUSY_SESSIONS_SHOWN,
    GATE_CHANGES_SHOWN,
    MEMORY_NOTE,
    NO_DATA,
    REPORT_FORMAT,
    REPORT_VERSION,
    SESSIONS_SHOWN,
    hosts_lines,
    params_text,
    render_markdown,
)
from perfmon.engine.tables import tables_section

__all__ = [
    "BUSY_SESSIONS_SHOWN",
    "GATE_CHANGES_SHOWN",
    "MEMORY_NOTE",
    "METHOD",
    "NO_DATA",
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "SESSIONS_SHOWN",
    "NotARunDirectory",
    "build_report",
    "describe",
    "hosts_lines",
    "hosts_section",
    "render_markdown",
    "report_run_dir",
    "write_report",
]

METHOD = {
    "median": "numpy.median",
    "p95": "numpy.percentile(x, 95), linear interpolation (Hyndman & Fan definition 7)",
    "mad": "raw median absolute deviation: scipy.stats.median_abs_deviation(x, scale=1.0)",
    "measured_sessions": "sessions with status ok that are not warm-ups",
    "metrics": "all recorded samples except those of warm-up sessions",
    "machine": (
        "background CPU of a session = busy CPU time of the whole machine (/proc/stat: total -"
        " idle - iowait) minus the session tree's CPU time (rusage), over the machine's capacity"
        " (window x CPUs); flagged busy when it exceeds the limit by more than its tick"
        " resolution (2 / (USER_HZ x window)); sessions repeated by the noise guard (status"
        " noisy) are excluded from statistics, gates and metrics; median: statistics.median"
    ),
}

METHOD["peak_rss_bytes"] = MEMORY_NOTE


def _num(x: float | int | None) -> float | None:
    """A finite float for JSON, or None."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def describe(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, Any]:
    """Summary statistics of one sample of values.

    Args:
        values: the values (any unit), non-finite ones ignored.

    Returns:
        ``{"n", "median", "mad", "p95", "min", "max"}``; every statistic is None when there
        are no values. MAD is raw (``scale=1.0``); p95 uses linear interpolation.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"n": 0, "median": None, "mad": None, "p95": None, "min": None, "max": None}
    return {
        "n": int(arr.size),
        "median": _num(np.median(arr)),
        "mad": _num(median_abs_deviation(arr, scale=1.0)),
        "p95": _num(np.percentile(arr, 95)),
        "min": _num(arr.min()),
        "max": _num(arr.max()),
    }


# --- per-host section (sessions on a Ray cluster, issue 16) ------------------------------
def hosts_section(
    sessions: Sequence[Mapping[str, Any]], *, pooled: bool = False
) -> dict[str, Any] | None:
    """Per host: its fingerprint, its sessions by status, and the wall time of its measured
    sessions per workload/variant/params (``describe``). None when every session ran on the
    daemon's own host (no ``host`` recorded), so local reports are unchanged.

    Args:
        sessions: ``sessions.jsonl`` rows (``host`` / ``host_fingerprint`` may be missing).
        pooled: the campaign pooled hosts (``[executor] allow_mixed_hosts = true``).

    Returns:
        ``{"hosts": [{"host", "fingerprints", "by_status", "groups": [{"workload",
        "variant", "params", "wall_s": describe(...)}]}], "fingerprints": n, "per_host":
        whether gates and tables were judged per host, "pooled": whether several hosts were
        pooled because the campaign opted in}``.
    """
    if not any(s.get("host") for s in sessions):
        return None
    by_host: dict[str, list[Mapping[str, Any]]] = {}
    for s in sessions:
        by_host.setdefault(str(s.get("host") or "(not started)"), []).append(s)
    hosts = []
    for host, rows in sorted(by_host.items()):
        walls: dict[tuple[str, str, str], list[float]] = {}
        for s in rows:
            if s.get("status") != "ok" or s.get("warmup") or s.get("wall_s") is None:
                continue
            key = (str(s.get("workload")), str(s.get("variant")), params_text(s.get("params")))
            walls.setdefault(key, []).append(float(s["wall_s"]))
        hosts.append(
            {
                "host": host,
                "fingerprints": sorted({str(s.get("host_fingerprint") or "") for s in rows} - {""}),
                "by_status": dict(sorted(Counter(str(s.get("status")) for s in rows).items())),
                "groups": [
                    {"workload": w, "variant": v, "params": p, "wall_s": describe(vals)}
                    for (w, v, p), vals in sorted(walls.items())
                ],
            }
        )
    prints = {f for h in hosts for f in h["fingerprints"]}
    return {
        "hosts": hosts,
        "fingerprints": len(prints),
        "per_host": judged_per_host(sessions, pooled),
        "pooled": pooled and len(host_fingerprints(sessions)) > 1,
    }


def _session_groups(sessions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload + variant + params statistics of measured (OK, non-warm-up) sessions."""
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}
    for s in sessions:
        if s.get("status") != "ok" or s.get("warmup"):
            continue
        params = tuple(sorted((str(k), str(v)) for k, v in (s.get("params") or {}).items()))
        key = (str(s.get("workload", "")), str(s.get("variant", "")), params)
        groups.setdefault(key, []).append(s)
    out = []
    for (workload, variant, params), rows in groups.items():
        walls = [r["wall_s"] for r in rows if r.get("wall_s") is not None]
        rss = [r["peak_rss_bytes"] for r in rows if r.get("peak_rss_bytes") is not None]
        out.append(
            {
                "workload": workload,
                "variant": variant,
                "params": dict(params),
                "sessions": len(rows),
                "wall_s": describe(walls),
                "peak_rss_bytes": describe(rss),
            }
        )
    return out


def _recorded_metric_stats(data: RunData, warmup_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Per metric statistics over every sample except those of warm-up sessions, read batch
    by batch in bounded memory, exact (``perfmon.engine.recorded.metric_summaries``)."""

    return metric_summaries(data.batches, warmup_ids)


MAX_LABEL_GROUPS = 24
"""Most workload x variant x matrix combinations the report splits metrics by (each costs a
bounded-memory pass over the recording); the rest are left to ``report.json``'s readers."""


def _metric_stats_by_labels(
    data: RunData, sessions: Sequence[Mapping[str, Any]], exclude: Iterable[int]
) -> list[dict[str, Any]]:
    """Per metric, workload, variant and matrix values: statistics of the sessions' samples.

    The report's split of every metric by the labels gates use (issue 11): the exact summary
    (``perfmon.engine.recorded.metric_summaries``, bounded memory) of the samples of the
    measured sessions carrying those labels (machine-wide samples have none and are left out),
    for at most ``MAX_LABEL_GROUPS`` combinations. Only metrics that more than one label
    combination emitted are split.
    """

    skip = set(exclude)
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[int]] = {}
    for r in sessions:
        sid = r.get("id")
        if not isinstance(sid, int) or sid in skip or r.get("warmup"):
            continue
        raw = r.get("params")
        params = tuple((str(k), str(v)) for k, v in (raw.items() if isinstance(raw, dict) else ()))
        key = (str(r.get("workload", "")), str(r.get("variant", "")), params)
        groups.setdefault(key, []).append(sid)
    if len(groups) < 2:
        return []
    per_metric: dict[str, list[dict[str, Any]]] = {}
    for key in sorted(groups)[:MAX_LABEL_GROUPS]:
        ids = pa.array(sorted(groups[key]), pa.int32())

        def only(ids: pa.Array = ids) -> Iterator[pa.RecordBatch]:
            for b in data.batches():
                kept = b.filter(pc.is_in(b.column("session"), value_set=ids))
                if kept.num_rows:
                    yield kept

        workload, variant, params = key
        for st in metric_summaries(only):
            per_metric.setdefault(str(st["name"]), []).append(
                {
                    "metric": st["name"],
                    "workload": workload,
                    "variant": variant,
                    "params": dict(params),
                    "n": st["n"],
                    "median": st["median"],
                    "p95": st["p95"],
                    "max": st["max"],
                }
            )
    return [
        row for name in sorted(per_metric) if len(per_metric[name]) > 1 for row in per_metric[name]
    ]


def _timing(data: RunData) -> dict[str, Any]:
    started = _num(data.manifest.get("started_t"))
    starts: list[float] = []
    ends: list[float] = []
    for s in data.sessions:
        if _num(s.get("start_t")) is not None:
            starts.append(float(s["start_t"]))
        if _num(s.get("end_t")) is not None:
            ends.append(float(s["end_t"]))
    if data.t_min is not None and data.t_max is not None:
        starts.append(data.t_min)
        ends.append(data.t_max)
    source = "manifest"
    if started is None and starts:
        started, source = min(starts), "first record"
    ended = max(ends) if ends else None
    duration = ended - started if started is not None and ended is not None else None

    def iso(x: float | None) -> str | None:
        if x is None:
            return None
        return _dt.datetime.fromtimestamp(x, _dt.UTC).isoformat(timespec="seconds")

    return {
        "started_t": started,
        "ended_t": ended,
        "duration_s": duration,
        "started_utc": iso(started),
        "ended_utc": iso(ended),
        "started_from": source if started is not None else None,
        "ended_from": "last record" if ended is not None else None,
    }


def _verdict_line(verdict: str, gates: Sequence[GateResult]) -> str:
    if not gates:
        return f"{verdict.upper()}: no gates defined"
    counts = Counter(g.state.value for g in gates)
    parts = [
        f"{counts[s.value]} {s.value}"
        for s in (GateState.PASS, GateState.FAIL, GateState.INCONCLUSIVE, GateState.PENDING)
        if counts[s.value]
    ]
    return f"{verdict.upper()}: {counts['pass']} of {len(gates)} gates passed ({', '.join(parts)})"


def build_report(
    data: RunData,
    gate_results: Sequence[GateResult],
    *,
    verdict: str,
    set_results: Mapping[str, Sequence[GateResult]] | None = None,
) -> dict[str, Any]:
    """Build ``report.json``'s content from a run's recorded data.

    Args:
        data: the run as read by ``perfmon.engine.recorder.read_run``.
        gate_results: the gates as evaluated by the runner on the full recorded data, in
            campaign order.
        verdict: the run's verdict (a ``GateState`` value: pass only if every gate passes).
        set_results: per-group gate results (group name -> results in campaign order) when
            the run has several sets, or sessions on several hosts (``"golden @ gpu-a"``:
            ``perfmon.engine.recorded.gate_groups``); rendered as one gate table per group.

    Returns:
        A JSON-ready dict ``{"format": "perfmon-report", "version": 1, "run_id", "campaign",
        "run_dir", "verdict", "verdict_line", "machine", "timing", "gates", "sessions", "metrics",
        "malformed", "recording", "provenance", "method"}``. Statistics that have no data are
        None (rendered as "no data"). Values are in base units (seconds, bytes).
    """
    sessions = data.sessions
    warmup_ids = [int(s["id"]) for s in sessions if s.get("warmup") and s.get("id") is not None]
    excluded = warmup_ids + _noisy_ids(sessions)
    timing = _timing(data)
    gate_changes = _gate_changes(data.run_dir, timing["started_t"])
    pooled = allows_mixed_hosts(data.manifest)
    per_host = judged_per_host(sessions, pooled)
    profiles, profiles_problem = _profiles_checked(data.run_dir)
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "run_id": data.manifest.get("run_id", data.run_dir.name),
        "campaign": _campaign_name(data.manifest),
        "run_dir": str(data.run_dir),
        "verdict": verdict,
        "verdict_line": _verdict_line(verdict, gate_results),
        "machine": _machine(sessions),
        "timing": timing,
        "gates": [_gate_json(g) for g in gate_results],
        "gate_changes": gate_changes,
        "gates_by_set": {
            name: [_gate_json(g) for g in results] for name, results in (set_results or {}).items()
        },
        # Issue 16: "set and host" when gates_by_set's groups are sets on one host each.
        "gate_groups": "set and host" if per_host else "set",
        "sessions": _sessions_section(sessions, len(warmup_ids)),
        "metrics": _recorded_metric_stats(data, excluded),
        "metrics_by_labels": _metric_stats_by_labels(data, sessions, excluded),
        "malformed": _malformed_section(sessions),
        "recording": _recording_section(data, gate_changes, profiles_problem),
        "provenance": data.manifest.get("provenance"),
        "method": dict(METHOD),
        "profiles": profiles,
        "comparison": _comparison(data),
        "metric_caps": _metric_caps(data),
        "hosts": hosts_section(sessions, pooled=pooled),
        # Issue 11 (points 3 and 5), in their own keys so other sections merge cleanly.
        "verdict_rule": _verdict_rule(per_host),
        "inference": _inference(data),
        "stop_when": _stop_when(data),
        "tables": _tables(data, gate_results),
    }


def _campaign_name(manifest: Mapping[str, Any]) -> str | None:
    """The campaign's name as the manifest stores it (None when missing or malformed)."""
    campaign = manifest.get("campaign")
    name = campaign.get("name") if isinstance(campaign, dict) else campaign
    return name if isinstance(name, str) else None


def _sessions_section(sessions: Sequence[dict[str, Any]], warmups: int) -> dict[str, Any]:
    """report.json's ``sessions``: counts by status, per-group statistics of the measured
    sessions, and every session that did not end ok (or noisy)."""
    by_status = Counter(str(s.get("status", "unknown")) for s in sessions)
    failed = [
        {
            "id": s.get("id"),
            "workload": s.get("workload"),
            "variant": s.get("variant"),
            "params": s.get("params") or {},
            "warmup": bool(s.get("warmup")),
            "status": s.get("status"),
            "status_text": s.get("status_text") or s.get("status"),
            "exit_code": s.get("exit_code"),
            "signal": s.get("signal"),
            "error": s.get("error") or "",
        }
        for s in sessions
        if s.get("status") not in ("ok", "noisy")
    ]
    return {
        "total": len(sessions),
        "warmup": warmups,
        "by_status": dict(sorted(by_status.items())),
        "groups": _session_groups(sessions),
        "failed": failed,
    }


def _malformed_section(sessions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """report.json's ``malformed``: the total of malformed probe lines and who sent them."""
    rows = [
        {
            "id": s.get("id"),
            "workload": s.get("workload"),
            "variant": s.get("variant"),
            "malformed": int(s.get("malformed") or 0),
        }
        for s in sessions
        if s.get("malformed")
    ]
    return {"total": sum(r["malformed"] for r in rows), "sessions": rows}


def _recording_section(
    data: RunData, gate_changes: Mapping[str, Any], profiles_problem: str | None
) -> dict[str, Any]:
    """report.json's ``recording``: how the run's files read back, with every problem found
    (the recorder's, a torn ``events.jsonl``, damaged profiles)."""
    problems, damage = list(data.problems), list(getattr(data, "damage", []))
    if gate_changes["dropped_lines"]:
        dropped = gate_changes["dropped_lines"]
        problems.append(f"events.jsonl: {dropped} undecodable line(s) skipped")
        damage.append(problems[-1])
    if profiles_problem:
        problems.append(profiles_problem)
        damage.append(profiles_problem)
    return {
        "closed": data.closed,
        "samples": data.num_samples,
        "repaired_segments": data.repaired_segments,
        "samples_dropped_bytes": data.samples_dropped_bytes,
        "sessions_dropped_lines": data.sessions_dropped_lines,
        "problems": problems,
        "damage_found": bool(problems),
        "data_lost": bool(damage),
        "damaged_batches": int(getattr(data, "damaged_batches", 0)),
        "samples_lost": int(getattr(data, "samples_lost", 0)),
    }


def _verdict_rule(per_host: bool = False) -> str:
    """The verdict's rule as the report states it; a run judged per host adds its hosts."""
    if per_host:
        return VERDICT_RULE.replace("in every set", "in every set on every host", 1)
    return VERDICT_RULE


def _measured_by_set(data: RunData) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for s in data.sessions:
        if not s.get("warmup"):
            out.setdefault(str(s.get("set_name", "")), []).append(s)
    return out


def _campaign_sets(data: RunData) -> list[Mapping[str, Any]]:
    campaign = data.manifest.get("campaign")
    sets = campaign.get("sets") if isinstance(campaign, dict) else None
    return [x for x in sets if isinstance(x, Mapping)] if isinstance(sets, list) else []


def _inference(data: RunData) -> dict[str, Any]:
    """Which intervals the statistical gates show, and whether they hold at this run's n.

    ``anytime`` (default): confidence sequences, valid at the n shown whenever the run stopped.
    ``fixed``: the exact fixed-n intervals, valid only at the planned n: the report says
    whether every set ran its planned measured sessions (an early stop, by ``stop_when`` or an
    interruption, leaves them without their stated level).
    """
    campaign = data.manifest.get("campaign")
    stats = campaign.get("stats") if isinstance(campaign, dict) else None
    method = str(stats.get("inference", "anytime")) if isinstance(stats, dict) else "anytime"
    if method != "fixed":
        return {
            "method": "anytime",
            "valid": True,
            "line": "Statistical gates: anytime-valid confidence sequences (betting, "
            "Waudby-Smith & Ramdas 2024, paired log ratio): valid at the n shown, however "
            "the run stopped.",
        }
    measured = _measured_by_set(data)
    short = []
    for st in _campaign_sets(data):
        sessions = _num(st.get("sessions"))
        rows = measured.get(str(st.get("name")), [])
        combos = {(r.get("workload"), str(r.get("params")), r.get("variant")) for r in rows}
        if sessions is not None and len(rows) < sessions * max(1, len(combos)):
            short.append(f"{st.get('name')} ({len(rows)} of {int(sessions * len(combos))})")
    if short:
        line = (
            "Statistical gates: fixed-n exact rank intervals, valid only at the planned n; "
            f"these sets stopped short of it: {', '.join(short)}: their intervals do not hold "
            'their stated level (inference = "anytime" would).'
        )
    else:
        line = (
            "Statistical gates: fixed-n exact rank intervals, valid at the planned n, which "
            "every set reached."
        )
    return {"method": "fixed", "valid": not short, "line": line}


def _stop_when(data: RunData) -> list[dict[str, Any]]:
    """Per set with ``stop_when = "decided"``: measured sessions planned and run, and what
    stopping when decided saved (sessions, and seconds at the set's mean session wall time;
    for a duration set, the planned duration less the time it ran)."""
    measured = _measured_by_set(data)
    out: list[dict[str, Any]] = []
    for st in _campaign_sets(data):
        if st.get("stop_when") != "decided":
            continue
        name = str(st.get("name"))
        rows = measured.get(name, [])
        walls = [float(w) for r in rows if (w := _num(r.get("wall_s"))) is not None]
        mean_wall = sum(walls) / len(walls) if walls else None
        combos = {(r.get("workload"), str(r.get("params")), r.get("variant")) for r in rows}
        sessions = _num(st.get("sessions"))
        duration = _num(st.get("duration_s"))
        entry: dict[str, Any] = {"set": name, "ran": len(rows)}
        if sessions is not None:
            planned = int(sessions) * max(1, len(combos))
            saved = max(0, planned - len(rows))
            entry |= {
                "planned": planned,
                "sessions_saved": saved,
                "seconds_saved": None if mean_wall is None else saved * mean_wall,
            }
        elif duration is not None:
            starts = [float(x) for r in rows if (x := _num(r.get("start_t"))) is not None]
            ends = [float(x) for r in rows if (x := _num(r.get("end_t"))) is not None]
            ran_s = max(ends) - min(starts) if starts and ends else None
            entry |= {
                "planned_s": duration,
                "seconds_saved": None if ran_s is None else max(0.0, duration - ran_s),
            }
        out.append(entry)
    return out


def _metric_caps(data: RunData) -> dict[str, Any]:
    """What the metric-name caps dropped, from the overflow metrics in the recording (see
    ``perfmon.core.live``): ``{"dropped_samples", "dropped_names", "names_at_least",
    "max_metrics", "max_metric_name_bytes", "text"}``; zeros when nothing was dropped."""

    dropped = names = 0
    # Batch by batch (bounded memory): only the two overflow metrics are read.
    for batch in data.batches():
        metric = batch.column("metric")
        values = batch.column("value")
        for name in (DROPPED_SAMPLES_METRIC, DROPPED_NAMES_METRIC):
            if isinstance(metric, pa.DictionaryArray):
                known = metric.dictionary.to_pylist()
                if name not in known:
                    continue
                mask = pc.equal(metric.indices, known.index(name))
            else:
                mask = pc.equal(metric, name)
            sel = pc.filter(values, mask)
            if len(sel):
                if name == DROPPED_SAMPLES_METRIC:
                    dropped += int(pc.sum(sel).as_py() or 0)
                else:
                    names = max(names, int(pc.max(sel).as_py() or 0))
    campaign = data.manifest.get("campaign")
    camp = campaign if isinstance(campaign, dict) else {}
    max_metrics = int(camp.get("max_metrics") or MAX_METRICS)
    max_bytes = int(camp.get("max_metric_name_bytes") or MAX_METRIC_NAME_BYTES)
    at_least = names >= DROPPED_NAMES_EXACT
    return {
        "dropped_samples": dropped,
        "dropped_names": names,
        "names_at_least": at_least,
        "max_metrics": max_metrics,
        "max_metric_name_bytes": max_bytes,
        # The recording does not split drops by cause: "over the cap or longer than ...".
        "text": (
            dropped_text(dropped, 0, names, at_least, max_metrics, 0).replace(
                "-name cap", f"-name cap or longer than {max_bytes:,} bytes"
            )
            if dropped
            else ""
        ),
    }


def _noisy_ids(sessions: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ids of the attempts the noise guard repeated (status ``noisy``): not measured."""
    return [
        int(s["id"]) for s in sessions if s.get("status") == "noisy" and s.get("id") is not None
    ]


def _machine(sessions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How quiet the machine was (``perfmon.core.noise.summarize_noise`` over the recorded
    session rows), with one entry per session flagged busy."""

    def num(x: Any) -> float | None:  # a damaged row must not break the report
        if isinstance(x, bool) or not isinstance(x, int | float):
            return None
        return _num(x)

    busy = []
    for s in sessions:
        extra = s.get("extra") or {}
        if not isinstance(extra, Mapping) or not num(extra.get(NOISE_BUSY)):
            continue
        busy.append(
            {
                "id": s.get("id"),
                "workload": s.get("workload"),
                "variant": s.get("variant"),
                "params": s.get("params") or {},
                "status": s.get("status"),
                "repeated": s.get("status") == "noisy",
                "background_share": num(extra.get(NOISE_BACKGROUND_SHARE)),
                "limit_share": num(extra.get(NOISE_LIMIT)),
                "steal_share": num(extra.get(NOISE_STEAL_SHARE)),
                "load1": num(extra.get(NOISE_LOAD1)),
                "perfmon_cpu_s": num(extra.get(NOISE_PERFMON_S)),
                "window_s": num(extra.get(NOISE_WINDOW_S)),
                "wall_s": num(s.get("wall_s")),
                "cpu_s": num(s.get("cpu_s")),
            }
        )
    return {**summarize_noise(sessions).to_dict(), "busy_sessions": busy}


def _gate_changes(run_dir: Path, started_t: float | None) -> dict[str, Any]:
    """The gate changes recorded in ``events.jsonl``, each with ``since_start_s``."""

    changes, dropped = read_gate_changes(run_dir)
    t0 = started_t if started_t is not None else (changes[0]["t"] if changes else 0.0)
    return {
        "changes": [{**c, "since_start_s": c["t"] - t0} for c in changes],
        "dropped_lines": dropped,
    }


def _gate_json(g: GateResult) -> dict[str, Any]:
    return {
        "name": g.name,
        "expr": g.expr,
        "state": g.state.value,
        "value": _num(g.value),
        "ci_low": _num(g.ci_low),
        "ci_high": _num(g.ci_high),
        "n": g.n,
        "reason": g.reason,
        # Every group of a gate judged per group (issue 11), each with its own state.
        "groups": [
            {
                "label": gr.label,
                "state": gr.state.value,
                "value": _num(gr.value),
                "ci_low": _num(gr.ci_low),
                "ci_high": _num(gr.ci_high),
                "n": gr.n,
                "reason": gr.reason,
            }
            for gr in g.groups
        ],
        "per_set": [list(x) for x in g.per_set],
        # The gate's grammar as its parser gave it (issue 12): exporters read the unit and
        # the limit here and never parse "expr".
        "op": g.op,
        "threshold": _num(g.threshold),
        "threshold_text": g.threshold_text,
        "limit": g.limit,
        "unit": g.unit,
        "rate": g.rate,
        "direction": g.direction,
        "func": g.func,
        "metrics": list(g.metrics),
        "selections": [
            {"metric": m, "matchers": [list(x) for x in matchers]} for m, matchers in g.selections
        ],
    }


def _comparison(data: RunData) -> dict[str, Any] | None:
    """Variants compared per group (``perfmon.engine.compare.comparison_section``)."""

    try:
        return comparison_section(data)
    except ValueError:  # invalid statistical options stored in the manifest: no section
        return None


def _tables(data: RunData, gate_results: Sequence[GateResult]) -> dict[str, Any] | None:
    """Result tables in the shape users publish (``perfmon.engine.tables``, issue 15)."""

    kinds: dict[str, str] = {}
    for batch in data.batches():  # each metric's kind (dictionary codes: no per-row objects)
        if not batch.num_rows:
            continue
        mcol, kcol = batch.column("metric"), batch.column("kind")
        m_names, k_names = mcol.dictionary.to_pylist(), kcol.dictionary.to_pylist()
        pairs = np.unique(
            np.stack(
                [
                    mcol.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                    kcol.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                ]
            ),
            axis=1,
        )
        for mi, ki in pairs.T.tolist():
            kinds[str(m_names[mi])] = str(k_names[ki])
    try:
        return tables_section(data, gate_results, kinds)
    except ValueError:  # invalid statistical options stored in the manifest: no section
        return None


def _profiles_checked(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The profiles section and, when the run's profile files are damaged, a sentence saying so.

    Profiles are read by ``perfmon.engine.profiler`` and ``flame_export``; a damaged index or
    stacks file can surface there as any exception, which costs the report only this section.
    """

    index = run_dir / PROFILES_DIR / INDEX_FILE
    bad_lines = 0
    try:
        raw = index.read_bytes()
    except OSError:
        raw = b""
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
            if not isinstance(obj, dict) or not isinstance(obj.get("name", ""), str):
                bad_lines += 1
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad_lines += 1
    stacks = sorted((run_dir / PROFILES_DIR).glob("*.collapsed"))
    bad_stacks = [
        p.name for p in stacks if not p.name.startswith("variant-") and not _collapsed_intact(p)
    ]
    try:
        section = _profiles(run_dir)
    except Exception as exc:  # a damaged optional file must not cost the report
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        return None, f"profiles: unreadable ({why}); profiles section left out"
    problems = []
    if bad_lines:
        problems.append(f"{PROFILES_DIR}/{INDEX_FILE}: {bad_lines} undecodable line(s) skipped")
    if bad_stacks:
        shown = ", ".join(bad_stacks[:5]) + (" ..." if len(bad_stacks) > 5 else "")
        problems.append(
            f"{PROFILES_DIR}: {len(bad_stacks)} stacks file(s) damaged ({shown}); "
            "their unreadable lines skipped"
        )
    return section, "; ".join(problems) or None


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _collapsed_intact(path: Path) -> bool:
    """Whether a py-spy collapsed stacks file reads as py-spy writes it: UTF-8, no control
    characters, every line ``frames COUNT``, ending with a newline (a cut file does not)."""

    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not text:
        return True
    if not text.endswith("\n") or _CONTROL_RE.search(text):
        return False
    return parse_collapsed(text).malformed == 0


def _profiles(run_dir: Path) -> dict[str, Any] | None:
    """The py-spy profiles section (``flame_export.profiles_section``), None if unreadable."""

    try:
        return profiles_section(run_dir)
    except (OSError, ValueError):
        return None


# -- Markdown -----------------------------------------------------------------------------


def write_report(
    run_dir: Path,
    report: dict[str, Any],
    *,
    data: RunData | None = None,
    extra_formats: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.json`` into the run directory, each atomically, then
    the other formats (``perfmon.engine.exporters``: report.html, report.csv, junit.xml).

    Args:
        run_dir: the run directory.
        report: ``build_report``'s dict.
        data: the run's ``RunData`` when the caller has it (the HTML and CSV exporters read
            the run directory themselves otherwise).
        extra_formats: formats written after md and json (default
            ``perfmon.engine.exporters.DEFAULT_FORMATS``); one that fails is logged and never
            costs the run its md and json reports.

    Returns:
        ``(path of report.md, path of report.json)``.

    Raises:
        OSError: if a file cannot be written.
        ValueError: if the report is not JSON-serialisable or not a perfmon report.
    """
    md_path = run_dir / "report.md"
    json_path = run_dir / "report.json"
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    # Campaign and workload text (commands, errors, names) must not carry escape sequences or
    # control bytes into report.md (report.json is JSON: its escaping suffices).
    markdown = strip_terminal_escapes(render_markdown(report))
    atomic_write_text(json_path, text)
    atomic_write_text(md_path, markdown)

    # Read at call time (not bound at import), so that a caller may narrow the defaults.
    formats = exporters.DEFAULT_FORMATS if extra_formats is None else tuple(extra_formats)
    if formats:
        write_exports(run_dir, report, data, formats)
    return md_path, json_path


class NotARunDirectory(FileNotFoundError):
    """A directory holding none of a run's files (no manifest, sessions or samples)."""


def report_run_dir(run_dir: Path) -> tuple[Path, str, dict[str, Any]]:
    """(Re)write a run directory's report from its recording, whatever state it is in.

    This is ``perfmon report``: it reads a closed, open, crashed or damaged run (every batch
    validated, damage skipped and counted, see ``perfmon.engine.recorder.read_run``), takes
    the gates and statistical options from the manifest (defaults, or no gates, when the
    manifest is damaged; a gate whose stored expression no longer parses is ``pending``), and
    writes ``report.md`` and ``report.json`` with a "Damage found" section when anything was.

    Args:
        run_dir: the run directory.

    Returns:
        ``(report_md_path, verdict, report)``. The verdict is ``pending`` when the manifest's
        gates could not be read (a damaged manifest can never let a run pass).

    Raises:
        NotARunDirectory: if ``run_dir`` is not a directory or holds no run file at all.
        OSError: if the report cannot be written.
    """

    names = (MANIFEST_NAME, SESSIONS_JSONL, SESSIONS_PARQUET, SAMPLES_PARQUET, SAMPLES_DIR)
    if not run_dir.is_dir() or not any((run_dir / n).exists() for n in names):
        raise NotARunDirectory(f"{run_dir}: not a run directory (no manifest, sessions or samples)")
    data = read_run(run_dir)
    gates, gate_problem = run_gates(data.manifest)
    stats, stats_problem = stored_stats_options(data.manifest)
    for problem in (gate_problem, stats_problem):
        if problem and problem not in data.problems:
            data.problems.append(problem)
            data.damage.append(problem)
    recorded = evaluate_recorded_safely(gates, data, stats)
    v = gates_verdict(recorded.run).value if recorded.run else GateState.PASS.value
    if gate_problem and not recorded.run:
        v = GateState.PENDING.value  # the gates are unknown: nothing can pass
    report = build_report(data, recorded.run, verdict=v, set_results=recorded.per_set)
    if gate_problem and not recorded.run:
        report["verdict_line"] = (
            "PENDING: the manifest's gates could not be read (see Damage found)"
        )
    md, _ = write_report(run_dir, report, data=data)
    return md, v, report
