"""The scheduler: turns a campaign's sets into the sequence of sessions to run.

Sets run in file order. Within a set come first its warm-up sessions (``warmup`` per workload,
matrix combination and variant), then its measured sessions, in rounds. One round runs every
(workload, matrix combination, variant) once.

- ``interleaved`` (A B A B ...): round after round, and within a round, for each workload and
  matrix combination, the variants one after another. Interleaving spreads slow drift of the
  machine (thermal state, caches, background load) evenly over the variants being compared.
- ``blocked`` (A A ... B B ...): for each workload and matrix combination, all sessions of
  the first variant, then all of the next.
- ``random``: round after round like ``interleaved``, each round in its own random order
  (a randomized complete block design: every round still runs each workload, matrix value
  and variant once, so the variants stay balanced, but no variant always runs first, in the
  state the one before it left the machine in). The order is drawn from ``random.Random(seed)``
  with the set's ``seed``, warm-ups first, so the same campaign gives the same schedule.

A set with a ``duration`` keeps producing rounds until that many seconds have passed since its
first session was handed out; the clock is checked between rounds, so every round is complete
and the variants stay balanced. Rounds of a duration set are interleaved, or random when the
set asks for it (a blocked order needs a known count).

This module is pure: the clock is injected, no processes are started here.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import shlex
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from perfmon.core.campaign import Campaign, SetConfig, VariantConfig, WorkloadConfig
from perfmon.core.model import GateResult, GateState, SessionSpec

_Combo = tuple[WorkloadConfig, tuple[tuple[str, str], ...]]


def substitute(arg: str, values: dict[str, str], *, quote: bool = False) -> str:
    """Replace each ``{name}`` in ``arg`` by ``values[name]``.

    Only exactly those placeholders are replaced, so other braces in an argument, such as a
    JSON literal, are left alone. The text is scanned once, left to right: a replacement is
    never scanned again, so a value that itself contains ``{other}`` stays as it is.

    Args:
        arg: one argument of a command (or, in shell mode, the whole command line).
        values: placeholder name (without braces) -> replacement.
        quote: quote every replacement with ``shlex.quote`` (shell mode: ``/bin/sh -c``), so
            that a directory named ``dir $(echo x)`` or a matrix value ``a;echo x`` reaches the
            command as one word and nothing in it is executed (POSIX sh quoting rules).
    """
    if not values:
        return arg
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in values))

    def replace(m: re.Match[str]) -> str:
        value = values[m.group(0)[1:-1]]
        return shlex.quote(value) if quote else value

    return pattern.sub(replace, arg)


def set_decided(gates: Sequence[GateResult], set_name: str) -> bool:
    """Whether every gate on a set is decided, for ``stop_when = "decided"``.

    A gate judged per set (``GateResult.per_set``) must be ``pass`` or ``fail`` in this set
    (on every host that ran it, when judged per (set, host): ``"golden @ gpu-a"``); a
    gate without per-set states (``max(rss_bytes)``, pooled over the run) must be pass or fail
    as a whole. A gate whose reason says ``provisional`` (fixed-n inference) is not decided:
    its interval is valid only at the planned n. No gates: nothing to decide, so False (the
    set runs to its plan).

    Args:
        gates: the latest gate results, campaign order.
        set_name: the set.
    """
    if not gates:
        return False
    decided = (GateState.PASS.value, GateState.FAIL.value)
    for g in gates:
        if "provisional" in g.reason:
            return False
        if g.per_set:
            mine = [state for name, state, _ in g.per_set if _of_set(name, set_name)]
            if not mine or any(state not in decided for state in mine):
                return False
        elif g.state.value not in decided:
            return False
    return True


def _of_set(group: str, set_name: str) -> bool:
    """Whether a gate group (``"golden"``, or ``"golden @ gpu-a"`` judged per host) is of
    ``set_name``."""
    return group == set_name or group.startswith(f"{set_name} @ ")


class Scheduler:
    """Hands out the sessions of a campaign one at a time.

    Args:
        campaign: the parsed campaign.
        python: the interpreter substituted for ``{python}`` (usually ``sys.executable``).
        clock: a monotonic clock in seconds, used for duration sets (injected for tests).
    """

    def __init__(
        self,
        campaign: Campaign,
        python: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.campaign = campaign
        self.python = python
        self._clock = clock
        self._next_id = 0
        self._stopped = False
        self._halted = False  # stop() was called (not merely the schedule exhausted)
        self._indices: dict[tuple[str, str, str, tuple[tuple[str, str], ...], bool], int] = {}
        self._starts: dict[str, float] = {}  # set name -> clock at its first session
        self._rngs: dict[str, random.Random] = {}  # set name -> its random order's generator
        self._iter = self._generate()
        self._repeats: deque[SessionSpec] = deque()  # sessions to run again, first out first
        self.repeated = 0
        """Sessions handed out again by ``repeat`` (they add to ``planned_total``)."""
        self.ended: dict[str, int] = {}
        """Sets ended early (``end_set``) -> measured sessions handed out in them by then."""
        self._measured: dict[str, int] = {}  # set name -> measured sessions handed out

    @property
    def planned_total(self) -> int | None:
        """Sessions the campaign will run (warm-ups included), or None if a set has a duration."""
        total = 0
        per_round = len(self._combos()) * len(self.campaign.variants)
        for s in self.campaign.sets:
            if s.sessions is None:
                return None
            total += (s.warmup + s.sessions) * per_round
        return total + self.repeated

    @property
    def handed_out(self) -> int:
        """Sessions handed out so far."""
        return self._next_id

    @property
    def stopped(self) -> bool:
        """True once ``stop`` was called."""
        return self._stopped

    def stop(self) -> None:
        """Hand out no more sessions: ``next_session`` returns None from now on."""
        self._stopped = True
        self._halted = True

    def next_session(self) -> SessionSpec | None:
        """The next session to run, or None when the campaign is fully scheduled or stopped."""
        if self._halted:
            return None
        if self._repeats:
            return self._repeats.popleft()
        if self._stopped:
            return None
        spec = next(self._iter, None)
        if spec is None:
            self._stopped = True
        return spec

    def end_set(self, set_name: str) -> None:
        """End a set now (``stop_when = "decided"``): none of its remaining sessions is handed
        out; the next set, if any, starts. Sessions already handed out still run."""
        self.ended.setdefault(set_name, self._measured.get(set_name, 0))

    def repeat(self, spec: SessionSpec) -> SessionSpec | None:
        """Schedule a session again, to run next (before the rest of the schedule).

        Used by the noise guard (``perfmon.core.noise``): a session that ran on a busy machine
        is run again at once, so a round of an interleaved or random order stays together
        (A B A B: a repeated A is followed by the B it is compared with) and a duration set's
        round stays complete.

        Args:
            spec: the session to repeat, as handed out.

        Returns:
            The new session: the same workload, variant, set, index and command, a new unique
            id and ``attempt`` one more; or None when the scheduler is stopped (``stop``).
        """
        if self._halted:
            return None
        again = dataclasses.replace(spec, id=self._next_id, attempt=spec.attempt + 1)
        self._next_id += 1
        self.repeated += 1
        self._repeats.append(again)
        return again

    # --- internals ---------------------------------------------------------------------------

    def _combos(self) -> list[_Combo]:
        """Every (workload, matrix combination), workloads in file order, matrix in key order."""
        combos: list[_Combo] = []
        for w in self.campaign.workloads:
            keys = list(w.matrix)
            for values in itertools.product(*(w.matrix[k] for k in keys)):
                combos.append((w, tuple(zip(keys, values, strict=True))))
        return combos

    def _generate(self) -> Iterator[SessionSpec]:
        combos = self._combos()
        variants = self.campaign.variants
        for s in self.campaign.sets:
            if s.warmup:
                yield from self._block(s, combos, variants, s.warmup, warmup=True)
            if s.sessions is not None:
                measured = self._block(s, combos, variants, s.sessions, warmup=False)
            else:
                measured = self._duration(s, combos, variants)
            for spec in measured:
                if s.name in self.ended:
                    break
                self._measured[s.name] = self._measured.get(s.name, 0) + 1
                yield spec

    def _block(
        self,
        s: SetConfig,
        combos: list[_Combo],
        variants: tuple[VariantConfig, ...],
        count: int,
        *,
        warmup: bool,
    ) -> Iterator[SessionSpec]:
        if s.order == "blocked":
            for w, params in combos:
                for v in variants:
                    for _ in range(count):
                        yield self._spec(s, w, params, v, warmup)
        else:
            for _ in range(count):
                for w, params, v in self._round(s, combos, variants):
                    yield self._spec(s, w, params, v, warmup)

    def _round(
        self, s: SetConfig, combos: list[_Combo], variants: tuple[VariantConfig, ...]
    ) -> list[tuple[WorkloadConfig, tuple[tuple[str, str], ...], VariantConfig]]:
        """One round: every (workload, matrix combination, variant) once, in the set's order."""
        round_ = [(w, params, v) for w, params in combos for v in variants]
        if s.order == "random":
            rng = self._rngs.setdefault(s.name, random.Random(s.seed))
            rng.shuffle(round_)
        return round_

    def _duration(
        self, s: SetConfig, combos: list[_Combo], variants: tuple[VariantConfig, ...]
    ) -> Iterator[SessionSpec]:
        assert s.duration_s is not None
        while True:
            for w, params, v in self._round(s, combos, variants):
                yield self._spec(s, w, params, v, False)
            if not combos or self._clock() - self._starts[s.name] >= s.duration_s:
                return

    def _spec(
        self,
        s: SetConfig,
        w: WorkloadConfig,
        params: tuple[tuple[str, str], ...],
        v: VariantConfig,
        warmup: bool,
    ) -> SessionSpec:
        self._starts.setdefault(s.name, self._clock())
        key = (s.name, w.name, v.name, params, warmup)
        index = self._indices.get(key, 0)
        self._indices[key] = index + 1
        campaign_dir = str(self.campaign.directory)
        values = {"python": self.python, "campaign_dir": campaign_dir, **dict(params)}
        if w.shell:
            command = substitute(w.command[0], values, quote=True)
            if v.args:
                command = f"{command} {shlex.join(v.args)}"
            argv: tuple[str, ...] = ("/bin/sh", "-c", command)
        else:
            argv = (*(substitute(a, values) for a in w.command), *v.args)
        env = {**w.env, **v.env}
        cwd = w.cwd if w.cwd is not None else self.campaign.directory
        if not cwd.is_absolute():
            cwd = self.campaign.directory / cwd
        spec = SessionSpec(
            id=self._next_id,
            workload=w.name,
            variant=v.name,
            set_name=s.name,
            index=index,
            warmup=warmup,
            argv=argv,
            env=tuple(env.items()),
            cwd=str(Path(cwd)),
            timeout_s=w.timeout_s,
            params=params,
            idle_timeout_s=w.idle_timeout_s,
        )
        self._next_id += 1
        return spec
