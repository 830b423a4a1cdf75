"""Label matchers: which sessions' samples a gate reads, PromQL style.

Every sample of a session carries the session's labels: ``variant``, ``workload``, ``set`` and
each of its matrix keys (``events="512"``); values are strings (a matrix value compares as the
string the campaign wrote, e.g. ``512``). A gate selects samples with matchers, as in PromQL
(https://prometheus.io/docs/prometheus/latest/querying/basics/#time-series-selectors)::

    p95(chunk_seconds{variant="candidate", workload=~"numpy|arrow"}) < 1ms

Operators: ``=`` (equal), ``!=`` (not equal), ``=~`` (the whole value matches a regular
expression) and ``!~`` (does not). As in PromQL a regular expression is fully anchored
(``re.fullmatch``; PromQL uses RE2, Python's ``re`` accepts the same common syntax), and a
label a sample does not carry has the empty value: machine-wide samples
(``system_memory_percent``, ``SYSTEM_SESSION``) carry no labels, so ``{variant="candidate"}``
matches none of them while ``{variant!="baseline"}`` matches all of them.

Patterns are capped at ``MAX_PATTERN_CHARS`` and label values at ``MAX_VALUE_CHARS`` so that a
hostile campaign cannot make matching slow (Python's ``re`` backtracks; RE2 would not).

This module is pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "LABEL_OPS",
    "MAX_PATTERN_CHARS",
    "MAX_VALUE_CHARS",
    "RESERVED_LABELS",
    "Matcher",
    "Selector",
    "canonical",
    "format_selector",
    "selector_matches",
    "session_labels",
]

LABEL_OPS: tuple[str, ...] = ("=", "!=", "=~", "!~")
"""Matcher operators, as in PromQL."""

RESERVED_LABELS: tuple[str, ...] = ("variant", "workload", "set")
"""Labels every session has; matrix keys add their own."""

MAX_PATTERN_CHARS = 256
"""Longest regular expression accepted in a ``=~`` / ``!~`` matcher."""

MAX_VALUE_CHARS = 256
"""Longest label value accepted in a matcher (names are shorter: ``NAME_RE`` in campaign)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher such as ``variant="candidate"`` or ``events=~"5.*"``.

    Attributes:
        label: the label name (``variant``, ``workload``, ``set`` or a matrix key).
        op: one of ``LABEL_OPS``.
        value: the value or the regular expression, as written (unquoted).

    Raises:
        ValueError: on construction, for an unknown operator, a value or pattern over its
            length cap, or a pattern that does not compile (the message says why).
    """

    label: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in LABEL_OPS:
            raise ValueError(f"unknown matcher operator {self.op!r} (use {', '.join(LABEL_OPS)})")
        if self.op in ("=~", "!~"):
            if len(self.value) > MAX_PATTERN_CHARS:
                raise ValueError(
                    f"regular expression of {len(self.value)} characters; the limit is "
                    f"{MAX_PATTERN_CHARS}"
                )
            try:
                compiled = re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {self.value!r}: {exc}") from None
            object.__setattr__(self, "_regex", compiled)
        elif len(self.value) > MAX_VALUE_CHARS:
            raise ValueError(
                f"label value of {len(self.value)} characters; the limit is {MAX_VALUE_CHARS}"
            )

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` when the sample lacks the label) satisfies this."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(value) is not None
        return found if self.op == "=~" else not found

    @property
    def text(self) -> str:
        """The matcher in source form, e.g. ``variant="candidate"``."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


Selector = tuple[Matcher, ...]
"""Matchers that must all hold (an empty selector matches everything)."""


def selector_matches(selector: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher holds for ``labels`` (missing labels are ``""``, as in PromQL).

    Args:
        selector: the matchers.
        labels: label name -> value of one session (or of nothing, for machine-wide samples).
    """
    return all(m.matches(labels.get(m.label, "")) for m in selector)


def format_selector(selector: Iterable[Matcher]) -> str:
    """``{a="x", b=~"y"}``, or ``""`` for an empty selector."""
    parts = [m.text for m in selector]
    return "{" + ", ".join(parts) + "}" if parts else ""


def canonical(selector: Iterable[Matcher]) -> Selector:
    """The selector's matchers sorted and deduplicated, so equal selections compare equal."""
    return tuple(sorted(set(selector), key=lambda m: (m.label, m.op, m.value)))


def session_labels(
    *, variant: str, workload: str, set_name: str, params: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """The labels of one session: its matrix values, then ``variant``, ``workload``, ``set``.

    The reserved labels win over a matrix key of the same name (the campaign forbids those).
    """
    labels = {str(k): str(v) for k, v in params}
    labels.update(variant=variant, workload=workload, set=set_name)
    return labels
