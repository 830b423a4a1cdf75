"""``junit.xml``: one testcase per gate per set, for CI systems that show JUnit results.

Layout (the de-facto JUnit XML schema that Jenkins, GitLab and GitHub test reporters read):
``<testsuites name=CAMPAIGN>`` holds one ``<testsuite>`` per set (named ``set NAME``), or one
named ``run`` when the run has a single set; each holds one ``<testcase>`` per gate
(``classname`` = ``perfmon.CAMPAIGN.SET``, ``name`` = the gate's name).

A gate's state maps onto the testcase so that the XML agrees with the exit status (a gate that
is undecided at the end fails the run, design.md section 7):

- ``pass``: a plain testcase;
- ``fail``: ``<failure type="fail" message=REASON>``;
- ``inconclusive`` (the interval still straddles the limit): ``<failure type="inconclusive">``;
- ``pending`` (not enough data): ``<failure type="pending">``.

Each testcase's ``<system-out>`` carries the expression, value, interval and sample count.
Characters XML 1.0 cannot carry (control characters a workload may put in a metric name) are
replaced by U+FFFD.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from perfmon.engine.exporters.common import gate_quantity

__all__ = ["render_junit"]

_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(x: Any) -> str:
    return _XML_BAD.sub("\ufffd", "" if x is None else str(x))


def _details(g: Mapping[str, Any]) -> str:
    ci = ""
    if g.get("ci_low") is not None or g.get("ci_high") is not None:
        ci = f", interval [{g.get('ci_low')}, {g.get('ci_high')}]"
    # The unit and limit as the gate's parser gave them (report.json's "unit" and "limit").
    shown = ""
    if g.get("unit") and g.get("value") is not None:
        shown = f" ({gate_quantity(g, g.get('value'))})"
    limit = f"\nlimit: {g.get('limit')}" if g.get("limit") else ""
    return (
        f"expression: {g.get('expr')}\nstate: {g.get('state')}\n"
        f"value: {g.get('value')}{shown}{ci}, n = {g.get('n')}{limit}\nreason: {g.get('reason')}"
    )


def _suite(root: ET.Element, name: str, classname: str, gates: Sequence[Mapping[str, Any]]) -> None:
    failures = sum(1 for g in gates if g.get("state") != "pass")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=_clean(name),
        tests=str(len(gates)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for g in gates:
        case = ET.SubElement(
            suite, "testcase", classname=_clean(classname), name=_clean(g.get("name"))
        )
        state = str(g.get("state"))
        if state != "pass":
            failure = ET.SubElement(
                case,
                "failure",
                type=_clean(state),
                message=_clean(f"{state.upper()}: {g.get('reason')}"),
            )
            failure.text = _clean(_details(g))
        out = ET.SubElement(case, "system-out")
        out.text = _clean(_details(g))


def render_junit(report: Mapping[str, Any]) -> str:
    """Render junit.xml from ``build_report``'s dict.

    Args:
        report: a perfmon-report (its ``gates`` and ``gates_by_set``).

    Returns:
        The XML document (UTF-8 declared), ending with a newline. A run without gates gives
        an empty suite (``tests="0"``).
    """
    campaign = str(report.get("campaign") or report.get("run_id") or "perfmon")
    root = ET.Element("testsuites", name=_clean(campaign))
    by_set = report.get("gates_by_set") or {}
    total = failures = 0
    if by_set:
        for set_name, gates in by_set.items():
            _suite(root, f"set {set_name}", f"perfmon.{campaign}.{set_name}", gates)
            total += len(gates)
            failures += sum(1 for g in gates if g.get("state") != "pass")
    else:
        gates = report.get("gates") or []
        _suite(root, "run", f"perfmon.{campaign}", gates)
        total = len(gates)
        failures = sum(1 for g in gates if g.get("state") != "pass")
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
