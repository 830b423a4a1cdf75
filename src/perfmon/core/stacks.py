"""Stack trees from sampled call stacks: parse, merge, diff, top functions, search.

py-spy (``py-spy record --format raw``) writes *collapsed stacks*, the format of Brendan
Gregg's ``stackcollapse`` scripts (https://github.com/brendangregg/FlameGraph): one line per
distinct stack, frames from the outermost to the innermost joined by ``;``, then a space and
the number of samples that saw that stack::

    <module> (cpu.py:7);work (cpu.py:5);fib (cpu.py:2) 30

With ``--subprocesses`` each stack starts with one frame per process, ``process PID:"CMDLINE"``
(the command line may hold newlines, so a "line" may span several physical lines).

A ``StackTree`` folds those stacks into a tree whose nodes count, for a frame reached by one
path from the root, the samples that passed through it (*total*) and the samples that ended in
it (*self*). *Shares* are counts divided by the tree's sample count. A *function*'s total
counts each sample once even when the function is on the stack several times (recursion), as
speedscope's "left heavy"/"sandwich" views and pprof's ``cum`` column do.

A ``DiffTree`` compares two trees (baseline and candidate) by share of samples, so that
profiles of different lengths compare: a frame *grew* when the candidate spends a larger share
of its samples in it (the differential flame graph of Gregg, "Differential Flame Graphs", 2014,
https://www.brendangregg.com/blog/2014-11-09/differential-flame-graphs.html, which also sizes
by one profile and colours by the difference; here a frame is sized by the mean of both shares
so that frames that vanished stay visible).

Pure: no I/O. The engine reads the files and hands their text to ``parse_collapsed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

ROOT_NAME = "all"
"""Name of every tree's root frame (as in flamegraph.pl)."""

ProcessFrames = Literal["keep", "merge", "drop"]

_PROCESS_RE = re.compile(r'process \d+:"(.*)"\Z', re.DOTALL)
_ANY_PROCESS_RE = re.compile(r'process (?:\d+:)?"(.*)"\Z', re.DOTALL)
_COUNT_RE = re.compile(r"\s(\d+)\Z")
_WS_RE = re.compile(r"\s+")
PROCESS_NAME_CHARS = 80
"""Process frames are cut to this many characters when merged (``process "CMDLINE"``)."""


def _process_frame(frame: str, how: ProcessFrames) -> str | None:
    """Rewrite a ``process PID:"CMDLINE"`` frame: keep it, drop the pid, or drop the frame."""
    if how == "keep":
        return frame
    m = _PROCESS_RE.match(frame)
    if m is None:
        return frame
    if how == "drop":
        return None
    cmd = " ".join(word.rsplit("/", 1)[-1] or word for word in m.group(1).split())
    if len(cmd) > PROCESS_NAME_CHARS:
        cmd = cmd[: PROCESS_NAME_CHARS - 1] + "…"
    return f'process "{cmd}"'


@dataclass(eq=False, slots=True)
class StackNode:
    """One frame of a stack tree, reached by one path from the root.

    Attributes:
        name: the frame as py-spy names it, e.g. ``"fib (cpu.py:2)"``.
        total: samples whose stack passed through this node (self included).
        self_count: samples whose stack ended here.
        children: child frames by name.
        parent: the caller's node; None for the root.
    """

    name: str
    total: int = 0
    self_count: int = 0
    children: dict[str, StackNode] = field(default_factory=dict)
    parent: StackNode | None = None

    @property
    def weight(self) -> float:
        """The node's size in a flame view: its total sample count."""
        return float(self.total)

    def child(self, name: str) -> StackNode:
        """The child called ``name``, created (with zero counts) when missing."""
        node = self.children.get(name)
        if node is None:
            node = StackNode(name, parent=self)
            self.children[name] = node
        return node

    def sorted_children(self) -> list[StackNode]:
        """Children by total samples, largest first (ties by name, for stable layouts)."""
        return sorted(self.children.values(), key=lambda n: (-n.total, n.name))

    def path(self) -> tuple[str, ...]:
        """Frame names from the root's first child down to this node (``()`` for the root)."""
        names: list[str] = []
        node: StackNode | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return tuple(reversed(names))

    @property
    def depth(self) -> int:
        """0 for the root, 1 for its children, and so on."""
        return len(self.path())

    def walk(self) -> Iterator[StackNode]:
        """This node and every node below it, depth first, children largest first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.sorted_children()))


@dataclass(frozen=True, slots=True)
class FunctionStat:
    """One function's samples over a whole tree.

    Attributes:
        name: the frame name.
        self_count: samples whose innermost frame is this function.
        total_count: samples with this function anywhere on the stack (counted once each).
        self_share / total_share: those counts divided by the tree's samples, 0..1.
    """

    name: str
    self_count: int
    total_count: int
    self_share: float
    total_share: float


class StackTree:
    """Sampled stacks folded into a tree (see the module docstring).

    Attributes:
        root: the root node, named ``ROOT_NAME``; its ``total`` is the number of samples.
        malformed: lines of input that were not ``frames count`` and were skipped.
    """

    def __init__(self) -> None:
        self.root = StackNode(ROOT_NAME)
        self.malformed = 0

    @property
    def total(self) -> int:
        """Samples in the tree."""
        return self.root.total

    def add_stack(self, frames: Sequence[str], count: int) -> None:
        """Add ``count`` samples of one stack.

        Args:
            frames: frame names, outermost first (an empty stack counts as the root's self).
            count: number of samples, >= 0.

        Raises:
            ValueError: if ``count`` is negative.
        """
        if count < 0:
            raise ValueError(f"sample count must be >= 0, got {count}")
        if count == 0:
            return
        node = self.root
        node.total += count
        for frame in frames:
            node = node.child(frame)
            node.total += count
        node.self_count += count

    def stacks(self) -> Iterator[tuple[tuple[str, ...], int]]:
        """Every distinct stack with its self samples: ``(frames, count)``, depth first."""
        for node in self.root.walk():
            if node.self_count:
                yield node.path(), node.self_count

    def merge(self, other: StackTree) -> None:
        """Add every sample of ``other`` to this tree (``other`` is left unchanged)."""
        for frames, count in other.stacks():
            self.add_stack(frames, count)
        self.malformed += other.malformed

    @classmethod
    def merged(cls, trees: Iterable[StackTree]) -> StackTree:
        """A new tree holding the samples of all ``trees`` (e.g. every profile of a variant)."""
        out = cls()
        for tree in trees:
            out.merge(tree)
        return out

    def find(self, path: Sequence[str]) -> StackNode | None:
        """The node reached by ``path`` (frame names from the root's child), or None."""
        node = self.root
        for name in path:
            found = node.children.get(name)
            if found is None:
                return None
            node = found
        return node

    def share(self, count: int) -> float:
        """``count`` as a share of the tree's samples (0 for an empty tree)."""
        return count / self.total if self.total else 0.0

    def functions(self) -> dict[str, FunctionStat]:
        """Every function's self and total samples, by frame name (see ``FunctionStat``)."""
        self_counts: dict[str, int] = {}
        total_counts: dict[str, int] = {}
        for frames, count in self.stacks():
            if frames:
                self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
            for name in set(frames):
                total_counts[name] = total_counts.get(name, 0) + count
        return {
            name: FunctionStat(
                name,
                self_counts.get(name, 0),
                total,
                self.share(self_counts.get(name, 0)),
                self.share(total),
            )
            for name, total in total_counts.items()
        }

    def top_functions(
        self, n: int = 20, *, by: Literal["self", "total"] = "self"
    ) -> list[FunctionStat]:
        """The ``n`` functions with the most samples.

        Args:
            n: how many to return (>= 0).
            by: ``"self"`` (samples spent in the function's own code) or ``"total"``.

        Returns:
            ``FunctionStat``s, largest first; ties by name.
        """
        stats = list(self.functions().values())
        if by == "self":
            stats.sort(key=lambda s: (-s.self_count, -s.total_count, s.name))
        else:
            stats.sort(key=lambda s: (-s.total_count, -s.self_count, s.name))
        return stats[: max(0, n)]

    def search(self, text: str) -> list[StackNode]:
        """Nodes whose frame name contains ``text`` (case-insensitive), largest total first.

        Args:
            text: a substring of a function or file name; blank text matches nothing.
        """
        needle = text.strip().lower()
        if not needle:
            return []
        found = [n for n in self.root.walk() if n.parent is not None and needle in n.name.lower()]
        found.sort(key=lambda n: -n.total)
        return found

    def to_collapsed(self) -> str:
        """The tree as collapsed stacks, one ``frames count`` line per stack (newline ended);
        whitespace runs in frame names (a command line's newlines) become single spaces."""
        lines = [
            ";".join(_WS_RE.sub(" ", f) if "\n" in f else f for f in frames) + f" {count}"
            for frames, count in self.stacks()
            if frames
        ]
        return "".join(line + "\n" for line in lines)

    def with_root(self, name: str) -> StackTree:
        """A copy in which each stack's outermost process frame is called ``name``.

        With py-spy's ``--subprocesses`` every stack of a session starts with the session's
        own process frame, ``process PID:"CMDLINE"`` (``process "CMDLINE"`` once merged).
        Variants that differ by their arguments then have different root frames, so their
        trees share no path: the same hot function sits under two roots and a diff shows it
        once as vanished and once as new (pyperformance's nbody: ``advance`` at -92.3 and
        +89.5 points, while its self share changed by -2.9 points). Renaming the root process
        frame (e.g. to the workload's name) makes the same function line up across variants.
        Process frames deeper in a stack (the session's subprocesses) are left as they are;
        stacks that do not start with a process frame are kept whole.

        Args:
            name: the new name of the root process frame, e.g. ``'process "nbody"'``.

        Returns:
            A new tree with the same samples (and ``malformed`` count).
        """
        out = StackTree()
        out.malformed = self.malformed
        for frames, count in self.stacks():
            if frames and is_process_frame(frames[0]):
                frames = (name, *frames[1:])
            out.add_stack(frames, count)
        return out

    def trimmed(self, first_frame_prefix: str) -> StackTree:
        """A copy without the frames above the first frame starting with ``first_frame_prefix``.

        py-spy's ``--subprocesses`` output starts each stack with the *ancestors* of the
        sampled process (``process PID:"..."`` frames of its parent, perfmon itself); trimming
        at ``process <session pid>:`` keeps the session's own processes only. Stacks without
        such a frame are kept whole.

        Args:
            first_frame_prefix: e.g. ``'process 1234:'``.
        """
        out = StackTree()
        out.malformed = self.malformed
        for frames, count in self.stacks():
            for i, frame in enumerate(frames):
                if frame.startswith(first_frame_prefix):
                    frames = frames[i:]
                    break
            out.add_stack(frames, count)
        return out


def is_process_frame(frame: str) -> bool:
    """True for py-spy's process frames: ``process PID:"CMDLINE"``, or ``process "CMDLINE"``
    once merged."""
    return frame.startswith("process ") and _ANY_PROCESS_RE.match(frame) is not None


def root_frame_name(workload: str) -> str:
    """The root process frame of a workload's aggregated profiles: ``process "<workload>"``.

    Args:
        workload: the workload's name (as in the campaign).
    """
    return f'process "{workload}"' if workload else 'process "session"'


def parse_collapsed(text: str, *, processes: ProcessFrames = "merge") -> StackTree:
    """Parse collapsed stacks (``py-spy record --format raw``) into a ``StackTree``.

    Args:
        text: the file's text; blank lines are skipped; a physical line that does not end with
            a sample count is joined to the next one (a process frame's command line may hold
            newlines); what still does not parse is counted in ``tree.malformed``.
        processes: what to do with py-spy's ``process PID:"CMDLINE"`` frames (from
            ``--subprocesses``): ``"keep"`` them, ``"merge"`` them across sessions by dropping
            the pid (``process "CMDLINE"``, whitespace collapsed, paths cut to their last
            component, the whole cut to ``PROCESS_NAME_CHARS``), or ``"drop"`` them.

    Returns:
        The tree.
    """
    tree = StackTree()
    pending = ""
    for raw in text.splitlines():
        line = f"{pending}\n{raw}" if pending else raw
        if not line.strip():
            continue
        m = _COUNT_RE.search(line)
        if m is None:
            pending = line
            continue
        pending = ""
        stack = line[: m.start()]
        frames: list[str] = []
        for part in stack.split(";"):
            frame = _process_frame(part, processes) if part.startswith("process ") else part
            if frame:
                frames.append(frame)
        if not frames:
            tree.malformed += 1
            continue
        tree.add_stack(frames, int(m.group(1)))
    if pending.strip():
        tree.malformed += 1
    return tree


# --- diff -------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class DiffNode:
    """One frame of a ``DiffTree``: its total share of samples in baseline and candidate.

    Attributes:
        name: frame name.
        base / cand: the node's total samples as a share of its tree's samples, 0..1.
        base_self / cand_self: the same for samples that ended in this node.
        children: by name; ``parent``: None for the root.
    """

    name: str
    base: float = 0.0
    cand: float = 0.0
    base_self: float = 0.0
    cand_self: float = 0.0
    children: dict[str, DiffNode] = field(default_factory=dict)
    parent: DiffNode | None = None

    @property
    def delta(self) -> float:
        """``cand - base``: positive when the candidate spends a larger share here."""
        return self.cand - self.base

    @property
    def weight(self) -> float:
        """The node's size in a flame view: the mean of both shares (children never exceed
        their parent, and a frame that vanished or appeared stays visible)."""
        return (self.base + self.cand) / 2

    def sorted_children(self) -> list[DiffNode]:
        """Children by weight, largest first (ties by name)."""
        return sorted(self.children.values(), key=lambda n: (-n.weight, n.name))

    def path(self) -> tuple[str, ...]:
        """Frame names from the root's child down to this node."""
        names: list[str] = []
        node: DiffNode | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return tuple(reversed(names))

    def walk(self) -> Iterator[DiffNode]:
        """This node and every node below it, depth first, children largest first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.sorted_children()))


@dataclass(frozen=True, slots=True)
class FunctionDelta:
    """How one function's share of samples changed from baseline to candidate.

    Attributes:
        name: frame name.
        base_self / cand_self: self share in each tree, 0..1.
        base_total / cand_total: total share (each sample once) in each tree, 0..1.
    """

    name: str
    base_self: float
    cand_self: float
    base_total: float
    cand_total: float

    @property
    def delta_self(self) -> float:
        """``cand_self - base_self``."""
        return self.cand_self - self.base_self

    @property
    def delta_total(self) -> float:
        """``cand_total - base_total``."""
        return self.cand_total - self.base_total


class DiffTree:
    """Baseline vs candidate by share of samples (see the module docstring).

    Args:
        base: the baseline tree; cand: the candidate tree.

    Attributes:
        root: a ``DiffNode`` over the union of both trees' paths (root shares are 1, or 0 for
            an empty tree).
        base_samples / cand_samples: the trees' sample counts.
    """

    def __init__(self, base: StackTree, cand: StackTree) -> None:
        self.base_samples = base.total
        self.cand_samples = cand.total
        self.root = DiffNode(ROOT_NAME)
        self._base_functions = base.functions()
        self._cand_functions = cand.functions()
        self._fold(base.root, base.total, is_base=True)
        self._fold(cand.root, cand.total, is_base=False)

    def _fold(self, src: StackNode, samples: int, *, is_base: bool) -> None:
        if not samples:
            return
        todo: list[tuple[StackNode, DiffNode]] = [(src, self.root)]
        while todo:
            s, d = todo.pop()
            if is_base:
                d.base, d.base_self = s.total / samples, s.self_count / samples
            else:
                d.cand, d.cand_self = s.total / samples, s.self_count / samples
            for name, child in s.children.items():
                dc = d.children.get(name)
                if dc is None:
                    dc = DiffNode(name, parent=d)
                    d.children[name] = dc
                todo.append((child, dc))

    def functions(self) -> list[FunctionDelta]:
        """Every function of either tree with its shares in both, by name."""
        names = sorted(set(self._base_functions) | set(self._cand_functions))
        out = []
        zero = FunctionStat("", 0, 0, 0.0, 0.0)
        for name in names:
            b = self._base_functions.get(name, zero)
            c = self._cand_functions.get(name, zero)
            out.append(
                FunctionDelta(name, b.self_share, c.self_share, b.total_share, c.total_share)
            )
        return out

    def top_changes(
        self, n: int = 20, *, by: Literal["self", "total"] = "self"
    ) -> list[FunctionDelta]:
        """The ``n`` functions whose share changed most (by absolute change), largest first.

        Args:
            n: how many (>= 0).
            by: compare ``"self"`` shares or ``"total"`` shares.
        """
        out = self.functions()
        if by == "self":
            out.sort(key=lambda f: (-abs(f.delta_self), f.name))
        else:
            out.sort(key=lambda f: (-abs(f.delta_total), f.name))
        return out[: max(0, n)]

    def search(self, text: str) -> list[DiffNode]:
        """Nodes whose name contains ``text`` (case-insensitive), largest weight first."""
        needle = text.strip().lower()
        if not needle:
            return []
        found = [n for n in self.root.walk() if n.parent is not None and needle in n.name.lower()]
        found.sort(key=lambda n: -n.weight)
        return found


def diff_trees(base: StackTree, cand: StackTree) -> DiffTree:
    """Compare two trees by share of samples: ``DiffTree(base, cand)``."""
    return DiffTree(base, cand)
