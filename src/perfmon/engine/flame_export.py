"""Flame exports of a run's py-spy profiles: collapsed stacks, speedscope JSON, SVG flame graphs.

``write_exports(run_dir)`` merges the run's profiles per workload and variant
(``perfmon.core.stacks``; the root process frame renamed after the workload, so that variants
differing by their arguments line up) and writes, under ``run_dir/profiles/``, for each
workload ``W`` and variant ``V`` (``variant-<W>--<V>.*``):

- ``variant-<W>--<V>.collapsed``: the merged stacks (Brendan Gregg's collapsed format,
  readable by flamegraph.pl, speedscope, inferno);
- ``variant-<W>--<V>.speedscope.json``: speedscope's file format
  (https://github.com/jlfwong/speedscope/wiki/Importing-from-custom-sources and its schema
  https://www.speedscope.app/file-format-schema.json): one "sampled" profile whose samples are
  stacks of frame indices with a weight each; open it at https://www.speedscope.app;
- ``variant-<W>--<V>.svg``: a flame graph (root at the bottom, width proportional to samples,
  a ``<title>`` tooltip per frame), drawn here from the tree;
- ``diff-<W>--<A>-vs-<B>.svg``: a differential flame graph of the workload's baseline variant
  against each other variant of the same workload, sized by the mean share of samples and
  coloured by the change of share (red: the candidate spends a larger share there, blue:
  smaller), after Gregg's differential flame graphs
  (https://www.brendangregg.com/blog/2014-11-09/differential-flame-graphs.html).

A workload without a name (profiles recorded before profiles named their workload) is written
as ``variant-<V>.*`` and ``diff-<A>-vs-<B>.svg``.

``profiles_section(run_dir)`` is the report's view of the same data (top functions per variant,
the biggest changes, the exports' paths); ``render_profiles_md`` renders it for report.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from perfmon._version import __version__
from perfmon.core.stacks import (
    DiffNode,
    DiffTree,
    StackNode,
    StackTree,
    parse_collapsed,
    root_frame_name,
)
from perfmon.engine.profiler import PROFILES_DIR, ProfileRecord, load_index, load_stacks
from perfmon.engine.recorder import atomic_write_text

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
SVG_WIDTH = 1200
ROW_PX = 16
FONT_PX = 11
CHAR_PX = 6.6  # average advance of an 11 px monospace glyph, for fitting labels
MIN_PX = 0.5  # frames narrower than this are not drawn
_FRAME_RE = re.compile(r"(.*) \((.*):(\d+)\)\Z")
_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]")


def baseline_name(variants: list[str]) -> str | None:
    """The variant diffs are taken against: ``baseline`` when present, else the first."""
    if not variants:
        return None
    return "baseline" if "baseline" in variants else variants[0]


GroupKey = tuple[str, str]
"""``(workload, variant)``: profiles are merged and diffed per workload, never across them."""


def group_label(key: GroupKey) -> str:
    """``"workload/variant"`` (or the variant alone for a profile that names no workload)."""
    workload, variant = key
    return f"{workload}/{variant}" if workload else variant


def variant_trees(
    run_dir: Path,
) -> tuple[dict[GroupKey, StackTree], dict[GroupKey, list[ProfileRecord]]]:
    """Merge a run's profiles per (workload, variant).

    Profiles of different workloads are never merged: a diff of merged workloads would show
    partly which workloads happened to be profiled. Each stack's root process frame (the
    session's command line, which differs between variants that differ by ``args``) is
    renamed ``process "<workload>"`` (``StackTree.with_root``) so that the same function
    lines up across variants.

    Args:
        run_dir: the run directory.

    Returns:
        ``(trees, records)``: ``(workload, variant)`` -> merged tree, and the same key -> the
        profiles that went into it, in recording order; keys in order of first appearance.
        Profiles whose stacks file is missing or unreadable are left out.
    """
    trees: dict[GroupKey, StackTree] = {}
    used: dict[GroupKey, list[ProfileRecord]] = {}
    for rec in load_index(run_dir):
        if not rec.ok:
            continue
        try:
            text = load_stacks(run_dir, rec.name)
        except (OSError, ValueError):
            continue
        key = (rec.workload, rec.variant or "default")
        tree = parse_collapsed(text).with_root(root_frame_name(rec.workload))
        trees.setdefault(key, StackTree()).merge(tree)
        used.setdefault(key, []).append(rec)
    return trees, used


def diff_pairs(keys: list[GroupKey]) -> list[tuple[GroupKey, GroupKey]]:
    """The diffs to draw: per workload, its baseline variant against each other variant.

    Args:
        keys: the ``(workload, variant)`` groups with stacks.

    Returns:
        ``(base, cand)`` pairs, workloads in order of first appearance; the baseline of a
        workload is ``baseline_name`` of its variants.
    """
    by_workload: dict[str, list[str]] = {}
    for workload, variant in keys:
        by_workload.setdefault(workload, []).append(variant)
    out = []
    for workload, variants in by_workload.items():
        base = baseline_name(sorted(variants))
        for v in variants:
            if base is not None and v != base:
                out.append(((workload, base), (workload, v)))
    return out


def _stem(key: GroupKey) -> str:
    workload, variant = key
    return f"{_safe(workload)}--{_safe(variant)}" if workload else _safe(variant)


def speedscope_json(tree: StackTree, name: str) -> dict[str, Any]:
    """A speedscope file holding one sampled profile of ``tree``.

    Args:
        tree: the stacks; name: the profile's title in speedscope.

    Returns:
        JSON data per speedscope's file-format schema: ``shared.frames`` (name, file, line
        parsed from py-spy's ``func (file:line)`` names) and one ``sampled`` profile whose
        ``samples`` are stacks of frame indices (outermost first) with ``weights`` in samples.
    """
    frames: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in tree.stacks():
        if not stack:
            continue
        ids = []
        for frame in stack:
            i = index.get(frame)
            if i is None:
                i = index[frame] = len(frames)
                m = _FRAME_RE.match(frame)
                if m:
                    frames.append({"name": m.group(1), "file": m.group(2), "line": int(m.group(3))})
                else:
                    frames.append({"name": frame})
            ids.append(i)
        samples.append(ids)
        weights.append(count)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": f"perfmon {__version__}",
    }


def _hot_colour(name: str) -> str:
    """flamegraph.pl's "hot" palette, seeded by the frame name so colours are stable."""
    v = hashlib.blake2b(name.encode(), digest_size=2).digest()
    a, b = v[0] / 255, v[1] / 255
    return f"rgb({205 + int(50 * b)},{int(230 * a)},{int(55 * b)})"


def _diff_colour(delta: float, scale: float) -> str:
    """Red where the candidate's share grew, blue where it shrank, white when unchanged."""
    if scale <= 0:
        return "rgb(245,245,245)"
    x = min(1.0, abs(delta) / scale)
    fade = int(245 - 190 * x)
    return f"rgb(245,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},245)"


def flame_svg(tree: StackTree | DiffTree, title: str) -> str:
    """An SVG flame graph of a tree, or a differential one of a ``DiffTree``.

    Args:
        tree: the stacks (frames sized by samples) or a diff (sized by the mean share of both
            profiles, coloured by the change of share).
        title: a line of text drawn at the top.

    Returns:
        The SVG document (UTF-8 text), ``SVG_WIDTH`` pixels wide; root at the bottom.
    """
    root: StackNode | DiffNode = tree.root
    total = root.weight
    nodes: list[tuple[StackNode | DiffNode, float, int]] = []  # node, x, depth
    max_depth = 0
    scale = 0.0
    todo: list[tuple[StackNode | DiffNode, float, int]] = [(root, 0.0, 0)]
    while todo:
        node, x, depth = todo.pop()
        width = node.weight / total * SVG_WIDTH if total else 0.0
        if width < MIN_PX:
            continue
        nodes.append((node, x, depth))
        max_depth = max(max_depth, depth)
        if isinstance(node, DiffNode):
            scale = max(scale, abs(node.delta))
        cx = x
        for child in node.sorted_children():
            todo.append((child, cx, depth + 1))
            cx += child.weight / total * SVG_WIDTH
    height = (max_depth + 1) * ROW_PX + 3 * ROW_PX
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {SVG_WIDTH} {height}" font-family="monospace" font-size="{FONT_PX}">',
        '<rect width="100%" height="100%" fill="rgb(250,250,250)"/>',
        f'<text x="{SVG_WIDTH / 2}" y="{ROW_PX}" text-anchor="middle" font-size="{FONT_PX + 3}">'
        f"{escape(title)}</text>",
    ]
    for node, x, depth in nodes:
        width = node.weight / total * SVG_WIDTH
        y = height - (depth + 1) * ROW_PX
        if isinstance(node, DiffNode):
            fill = _diff_colour(node.delta, scale)
            tip = (
                f"{node.name}: baseline {node.base:.1%}, candidate {node.cand:.1%} "
                f"({node.delta * 100:+.1f} points)"
            )
        else:
            fill = _hot_colour(node.name)
            tip = (
                f"{node.name}: {node.total:,} samples ({node.total / total:.1%}), "
                f"self {node.self_count:,}"
            )
        out.append(
            f'<g><title>{escape(tip)}</title><rect x="{x:.2f}" y="{y}" width="{width:.2f}" '
            f'height="{ROW_PX - 1}" fill="{fill}" rx="2"/>'
        )
        chars = int((width - 4) / CHAR_PX)
        if chars >= 3:
            label = node.name if len(node.name) <= chars else node.name[: chars - 1] + "…"
            out.append(f'<text x="{x + 2:.2f}" y="{y + ROW_PX - 4}">{escape(label)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _safe(name: str) -> str:
    return _SAFE_RE.sub("_", name)


def write_exports(run_dir: Path) -> list[Path]:
    """Write the per-(workload, variant) and diff exports of a run's profiles.

    Files (under ``profiles/``): ``variant-<W>--<V>.collapsed``, ``.speedscope.json`` and
    ``.svg`` per workload ``W`` and variant ``V``, and ``diff-<W>--<A>-vs-<B>.svg`` per
    workload and candidate variant ``B`` against its baseline ``A`` (see the module docstring).

    Args:
        run_dir: the run directory.

    Returns:
        The files written (none when the run has no usable profile).

    Raises:
        OSError: if a file cannot be written.
    """
    trees, _ = variant_trees(run_dir)
    out_dir = Path(run_dir) / PROFILES_DIR
    written: list[Path] = []
    for key, tree in trees.items():
        label = group_label(key)
        stem = out_dir / f"variant-{_stem(key)}"
        for suffix, text in (
            (".collapsed", tree.to_collapsed()),
            (".speedscope.json", json.dumps(speedscope_json(tree, label))),
            (".svg", flame_svg(tree, f"{label}: {tree.total:,} samples")),
        ):
            path = stem.with_name(stem.name + suffix)
            atomic_write_text(path, text)
            written.append(path)
    for base, cand in diff_pairs(list(trees)):
        diff = DiffTree(trees[base], trees[cand])
        path = out_dir / _diff_file(base, cand)
        title = f"{group_label(cand)} vs {base[1]}: red = larger share of samples, blue = smaller"
        atomic_write_text(path, flame_svg(diff, title))
        written.append(path)
    return written


def _diff_file(base: GroupKey, cand: GroupKey) -> str:
    return f"diff-{_stem(base)}-vs-{_safe(cand[1])}.svg"


def profiles_section(run_dir: Path, *, top: int = 10) -> dict[str, Any]:
    """The report's profiles section: what was sampled, top functions per variant, diffs.

    Args:
        run_dir: the run directory.
        top: functions listed per variant and changes per diff.

    Returns:
        ``{"profiles", "failed", "sampled_sessions", "variants", "diffs"}``: the number of
        profiles, the failed ones' ``{name, session, message}``, the ids of sessions with
        stacks (their timings include py-spy's overhead), per (workload, variant)
        ``{workload, variant, profiles, samples, top: [{name, self_share, total_share}],
        exports: {collapsed, speedscope, svg}}`` and per workload and candidate ``{workload,
        base, cand, svg, changes: [{name, base_self, cand_self, delta_self}]}``. Export paths
        are relative to the run directory.
    """
    records = load_index(run_dir)
    trees, used = variant_trees(run_dir)
    variants = []
    for key, tree in trees.items():
        stem = f"{PROFILES_DIR}/variant-{_stem(key)}"
        variants.append(
            {
                "workload": key[0],
                "variant": key[1],
                "profiles": len(used.get(key, [])),
                "samples": tree.total,
                "top": [
                    {"name": f.name, "self_share": f.self_share, "total_share": f.total_share}
                    for f in tree.top_functions(top)
                ],
                "exports": {
                    "collapsed": f"{stem}.collapsed",
                    "speedscope": f"{stem}.speedscope.json",
                    "svg": f"{stem}.svg",
                },
            }
        )
    diffs = []
    for base, cand in diff_pairs(list(trees)):
        diff = DiffTree(trees[base], trees[cand])
        diffs.append(
            {
                "workload": base[0],
                "base": base[1],
                "cand": cand[1],
                "svg": f"{PROFILES_DIR}/{_diff_file(base, cand)}",
                "changes": [
                    {
                        "name": f.name,
                        "base_self": f.base_self,
                        "cand_self": f.cand_self,
                        "delta_self": f.delta_self,
                    }
                    for f in diff.top_changes(top)
                ],
            }
        )
    return {
        "profiles": len(records),
        "failed": [
            {"name": r.name, "session": r.session, "message": r.message}
            for r in records
            if not r.ok
        ],
        "sampled_sessions": sorted({r.session for r in records if r.ok}),
        "pyspy_cpu_s": sum(r.pyspy_cpu_s or 0.0 for r in records),
        "sampled_s": sum(r.seconds for r in records if r.ok),
        "variants": variants,
        "diffs": diffs,
    }


def render_profiles_md(section: dict[str, Any]) -> list[str]:
    """report.md lines for ``profiles_section``'s data (a ``## Profiles (py-spy)`` section)."""
    out = ["## Profiles (py-spy)", ""]
    if not section.get("profiles"):
        out += [
            "No session was profiled (key f in the viewer, or `[profile]` in the campaign).",
            "",
        ]
        return out
    sampled = section["sampled_sessions"]
    out.append(
        f"{section['profiles']} profile(s); sessions with stacks: "
        + (", ".join(str(s) for s in sampled) or "none")
        + ". Their timings include py-spy's sampling overhead."
    )
    cpu, sampled_s = section.get("pyspy_cpu_s") or 0.0, section.get("sampled_s") or 0.0
    if cpu and sampled_s:
        out.append(
            f"py-spy itself used {cpu:.2f} CPU-s over {sampled_s:.1f} s of sampling "
            f"({cpu / sampled_s:.1%} of one core)."
        )
    for fail in section["failed"]:
        out.append(f"- {fail['name']} (session {fail['session']}) failed: {fail['message']}")
    out.append("")
    for v in section["variants"]:
        ex = v["exports"]
        label = group_label((v.get("workload", ""), v["variant"]))
        out += [
            f"### Top functions: {label} ({v['profiles']} profile(s), {v['samples']:,} samples)",
            "",
            f"Exports: `{ex['collapsed']}`, `{ex['speedscope']}` (open in speedscope), "
            f"`{ex['svg']}`.",
            "",
            "| Function | Self | Total |",
            "|---|---:|---:|",
        ]
        for f in v["top"]:
            name = f["name"].replace("|", "\\|")
            out.append(f"| `{name}` | {f['self_share']:.1%} | {f['total_share']:.1%} |")
        out.append("")
    for d in section["diffs"]:
        where = f"{d['workload']}: " if d.get("workload") else ""
        out += [
            f"### {where}{d['cand']} vs {d['base']}: biggest changes of self share",
            "",
            f"Differential flame graph: `{d['svg']}` (red: larger share in {d['cand']}).",
            "",
            f"| Function | {d['base']} | {d['cand']} | Change |",
            "|---|---:|---:|---:|",
        ]
        for f in d["changes"]:
            name = f["name"].replace("|", "\\|")
            out.append(
                f"| `{name}` | {f['base_self']:.1%} | {f['cand_self']:.1%} | "
                f"{f['delta_self'] * 100:+.1f} pp |"
            )
        out.append("")
    return out
