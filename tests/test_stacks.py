"""perfmon.core.stacks: collapsed stacks into trees, merge, diff, top functions, search."""

from __future__ import annotations

import pytest

from perfmon.core.stacks import (
    ROOT_NAME,
    StackTree,
    diff_trees,
    parse_collapsed,
)

SAMPLE = """\
main (a.py:1);work (a.py:5);fib (a.py:2);fib (a.py:2) 30
main (a.py:1);work (a.py:5);fib (a.py:2) 10
main (a.py:1);work (a.py:5) 5
main (a.py:1);idle (a.py:9);sleep (time) 15
"""


def test_parse_counts_total_and_self() -> None:
    tree = parse_collapsed(SAMPLE)
    assert tree.total == 60
    assert tree.malformed == 0
    assert tree.root.name == ROOT_NAME
    main = tree.find(["main (a.py:1)"])
    assert main is not None and main.total == 60 and main.self_count == 0
    work = tree.find(["main (a.py:1)", "work (a.py:5)"])
    assert work is not None and (work.total, work.self_count) == (45, 5)
    inner = tree.find(["main (a.py:1)", "work (a.py:5)", "fib (a.py:2)", "fib (a.py:2)"])
    assert inner is not None and inner.total == inner.self_count == 30
    assert inner.path()[-1] == "fib (a.py:2)" and inner.depth == 4
    assert tree.find(["nope"]) is None


def test_children_sorted_largest_first() -> None:
    tree = parse_collapsed(SAMPLE)
    main = tree.find(["main (a.py:1)"])
    assert main is not None
    assert [c.name for c in main.sorted_children()] == ["work (a.py:5)", "idle (a.py:9)"]


def test_recursion_counts_each_sample_once_in_function_total() -> None:
    funcs = parse_collapsed(SAMPLE).functions()
    fib = funcs["fib (a.py:2)"]
    assert fib.total_count == 40  # 30 + 10, not 30*2 + 10
    assert fib.self_count == 40
    assert fib.total_share == pytest.approx(40 / 60)
    assert funcs["main (a.py:1)"].total_share == pytest.approx(1.0)


def test_top_functions_by_self_and_total() -> None:
    tree = parse_collapsed(SAMPLE)
    top = tree.top_functions(2)
    assert [(f.name, f.self_count) for f in top] == [("fib (a.py:2)", 40), ("sleep (time)", 15)]
    by_total = tree.top_functions(1, by="total")
    assert by_total[0].name == "main (a.py:1)"
    assert tree.top_functions(0) == []


def test_search_is_case_insensitive_and_ordered() -> None:
    tree = parse_collapsed(SAMPLE)
    found = tree.search("FIB")
    assert [n.total for n in found] == [40, 30]
    assert tree.search("   ") == []
    assert tree.search("zzz") == []


def test_malformed_lines_are_counted_not_fatal() -> None:
    tree = parse_collapsed("a;b 3\n\nno count here\n;; 4\nc 2\n")
    # A physical line without a count is joined to the next (a process frame's command line
    # may hold newlines); empty frames are dropped.
    assert tree.total == 9 and tree.malformed == 0
    assert tree.find(["no count here\n"]).total == 4  # type: ignore[union-attr]
    tail = parse_collapsed("a;b 3\ntrailing text without count")
    assert tail.total == 3 and tail.malformed == 1
    empty = parse_collapsed(";;; 7\n")
    assert empty.total == 0 and empty.malformed == 1


def test_process_frames_keep_merge_drop() -> None:
    text = (
        'process 11:"python -c \nimport x";process 12:"/v/bin/python /a/w.py";f (w.py:1) 4\n'
        'process 21:"python -c \nimport x";process 22:"/v/bin/python /a/w.py";f (w.py:1) 6\n'
    )
    merged = parse_collapsed(text)
    assert merged.total == 10 and merged.malformed == 0
    (top,) = merged.root.children.values()
    assert top.name == 'process "python -c import x"' and top.total == 10
    assert list(top.children) == ['process "python w.py"']
    kept = parse_collapsed(text, processes="keep")
    assert len(kept.root.children) == 2
    dropped = parse_collapsed(text, processes="drop")
    assert list(dropped.root.children) == ["f (w.py:1)"]


def test_round_trip_and_merge() -> None:
    tree = parse_collapsed(SAMPLE)
    again = parse_collapsed(tree.to_collapsed())
    assert sorted(again.stacks()) == sorted(tree.stacks())
    both = StackTree.merged([tree, again])
    assert both.total == 120
    assert both.find(["main (a.py:1)", "work (a.py:5)"]).total == 90  # type: ignore[union-attr]
    assert tree.total == 60  # inputs unchanged


def test_add_stack_rejects_negative() -> None:
    with pytest.raises(ValueError):
        StackTree().add_stack(["a"], -1)


def test_diff_by_share_of_samples() -> None:
    base = parse_collapsed("m;slow 80\nm;fast 20\n")
    cand = parse_collapsed("m;slow 10\nm;fast 30\nm;new 10\n")  # 50 samples
    diff = diff_trees(base, cand)
    assert (diff.base_samples, diff.cand_samples) == (100, 50)
    slow = diff.root.children["m"].children["slow"]
    assert slow.base == pytest.approx(0.8) and slow.cand == pytest.approx(0.2)
    assert slow.delta == pytest.approx(-0.6)
    fast = diff.root.children["m"].children["fast"]
    assert fast.delta == pytest.approx(0.6 - 0.2)
    new = diff.root.children["m"].children["new"]
    assert new.base == 0 and new.cand == pytest.approx(0.2) and new.weight == pytest.approx(0.1)
    # weights never exceed the parent's
    m = diff.root.children["m"]
    assert sum(c.weight for c in m.children.values()) <= m.weight + 1e-12
    top = diff.top_changes(2)
    assert [f.name for f in top] == ["slow", "fast"]
    assert top[0].delta_self == pytest.approx(-0.6)
    assert [n.name for n in diff.search("NEW")] == ["new"]


def test_diff_of_empty_trees() -> None:
    diff = diff_trees(StackTree(), parse_collapsed("a 1\n"))
    assert diff.root.children["a"].base == 0 and diff.root.children["a"].cand == 1
    assert diff.functions()[0].delta_total == 1


def test_trimmed_drops_ancestor_process_frames() -> None:
    text = (
        'process 1:"perfmon\n daemon";process 7:"python w.py";f (w.py:1) 4\n'
        'process 1:"perfmon\n daemon";process 7:"python w.py";process 9:"python c.py";g 2\n'
        "h 1\n"
    )
    tree = parse_collapsed(text, processes="keep").trimmed("process 7:")
    assert sorted(tree.root.children) == ["h", 'process 7:"python w.py"']
    assert tree.total == 7
    kept = parse_collapsed(text, processes="keep")
    again = parse_collapsed(kept.to_collapsed(), processes="keep")
    assert again.total == 7 and 'process 1:"perfmon daemon"' in again.root.children
