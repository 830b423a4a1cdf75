"""What a run's manifest says of its campaign: written by the runner, read back by reports,
comparisons and result tables.

``campaign_to_json`` is the campaign as resolved, as stored in ``manifest.json``'s ``campaign``
(design.md section 6); ``stats_options`` and ``manifest_directions`` read it back. These helpers
lived in the runner and in ``compare`` before issue 12; they sit here, below both, so that
reading a recorded run never imports the runner (no import cycle).

This module imports only the core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perfmon.core.campaign import Campaign
from perfmon.core.stats import StatsOptions
from perfmon.core.units import HIGHER, LOWER, metric_direction

__all__ = ["campaign_to_json", "manifest_directions", "stats_options"]


def campaign_to_json(campaign: Campaign) -> dict[str, Any]:
    """Return the campaign as resolved, as plain JSON data, for the run's manifest.

    Args:
        campaign: a parsed campaign.

    Returns:
        A dict of lists, dicts, strings and numbers; gates appear as ``{name, expr, window_s}``.
    """

    def plain(obj: Any) -> Any:
        if isinstance(obj, Path):
            return str(obj)
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [plain(v) for v in obj]
        return obj

    return {
        "name": campaign.name,
        "path": str(campaign.path),
        "sample_interval_s": campaign.sample_interval_s,
        "grace_s": campaign.grace_s,
        "timeout_s": campaign.timeout_s,
        "idle_timeout_s": campaign.idle_timeout_s,
        "log_cap_bytes": campaign.log_cap_bytes,
        "workloads": [plain(dataclasses.asdict(w)) for w in campaign.workloads],
        "variants": [plain(dataclasses.asdict(v)) for v in campaign.variants],
        "sets": [plain(dataclasses.asdict(s)) for s in campaign.sets],
        "directions": dict(campaign.directions),  # [metric.NAME] better (issue 11)
        "gates": [
            {
                "name": g.name,
                "expr": g.expr,
                "window_s": g.window_s,
                # Issue 11: the gate's by labels, and the directions of the metrics it reads
                # (from [metric.X] better or their suffix), so reports re-judge it the same.
                "by": list(g.by),
                "directions": {
                    m: d
                    for m in sorted(g.gate.metrics)
                    if (d := metric_direction(m, campaign.directions)) is not None
                },
            }
            for g in campaign.gates
        ],
        "stats": dataclasses.asdict(campaign.stats),
        "profile": plain(dataclasses.asdict(campaign.profile)),
        "noise": dataclasses.asdict(campaign.noise),
        "max_metrics": campaign.max_metrics,
        "max_metric_name_bytes": campaign.max_metric_name_bytes,
        "share": campaign.share,
        "reference": campaign.reference,  # issue 15: the reference variant of comparisons
        # Issue 16: where sessions ran, and whether statistics may pool hosts (reports of a
        # finished run group by host without the cluster).
        "executor": {
            "kind": campaign.executor.kind,
            "pair_same_host": campaign.executor.pair_same_host,
            "allow_mixed_hosts": campaign.executor.allow_mixed_hosts,
        },
    }


def stats_options(campaign_json: dict[str, Any]) -> StatsOptions:
    """The statistical options stored in a manifest's campaign (defaults where absent).

    Args:
        campaign_json: ``manifest["campaign"]`` (``campaign_to_json``'s output).

    Raises:
        ValueError: if the stored options are invalid.
    """
    stored = campaign_json.get("stats") or {}
    known = {f.name for f in dataclasses.fields(StatsOptions)}
    return StatsOptions(**{k: v for k, v in stored.items() if k in known})


def manifest_directions(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Metric directions a run recorded: the campaign's ``[metric.X] better`` tables and the
    directions stored with its gates (``{}`` for runs recorded before issue 11)."""
    campaign = manifest.get("campaign") if isinstance(manifest, Mapping) else None
    if not isinstance(campaign, Mapping):  # a damaged manifest: no directions
        return {}
    out: dict[str, str] = {}
    gates = campaign.get("gates")
    for g in gates if isinstance(gates, list) else ():
        if isinstance(g, Mapping) and isinstance(g.get("directions"), Mapping):
            out.update({str(k): str(v) for k, v in g["directions"].items()})
    if isinstance(campaign.get("directions"), Mapping):
        out.update({str(k): str(v) for k, v in campaign["directions"].items()})
    return {k: v for k, v in out.items() if v in (LOWER, HIGHER)}
