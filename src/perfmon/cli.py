"""The ``perfmon`` command.

Every subcommand imports what it needs when it runs, so ``perfmon --version`` and ``--help``
import nothing but argparse (no Textual, pyarrow, scipy or numpy).

Exit statuses (design.md section 7): 0 every gate passed, 1 a gate failed or was undecided at
the end, 2 usage or campaign error, 3 the run could not complete (internal error, interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from perfmon._version import __version__

if TYPE_CHECKING:
    from perfmon.core.campaign import Campaign

EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
DEFAULT_CAMPAIGN = "perfmon.toml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"perfmon: error: {message}\n")


def _samples_dir() -> Path | None:
    """The bundled samples directory, when perfmon runs from a checkout."""
    candidate = Path(__file__).resolve().parents[2] / "samples"
    return candidate if (candidate / "quickstart.toml").is_file() else None


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    from perfmon.core.text import strip_terminal_escapes

    # Messages quote campaign keys, paths and daemon logs: no escapes reach the terminal.
    print(f"perfmon: error: {strip_terminal_escapes(message)}", file=sys.stderr)
    return status


def _say(text: str) -> None:
    """Print a line of campaign or run text to stdout, escapes and control bytes stripped."""
    from perfmon.core.text import strip_terminal_escapes

    print(strip_terminal_escapes(text))


def _load(path: str, set_sizes: list[str] | None = None) -> Campaign:
    """Load a campaign (sets resized by ``--set``), every CampaignError becoming status 2."""
    from perfmon.core.campaign import CampaignError, load_campaign, override_sets

    try:
        return override_sets(load_campaign(path), set_sizes or [])
    except CampaignError as exc:
        raise _CampaignFailure(str(exc)) from None


class _CampaignFailure(Exception):
    """A CampaignError, re-raised under a name this module can catch without importing the
    core at start-up (``perfmon --version`` and ``--help`` stay light)."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for tests and for ``--help``): the global options,
    then one ``_add_*`` function per subcommand."""
    parser = _Parser(
        prog="perfmon",
        description=(
            "Run benchmark campaigns: launch workloads as subprocesses, watch timings, memory "
            "and the workloads' own metrics live, judge release gates, and write a report."
        ),
        epilog=(
            "Exit status: 0 all gates pass, 1 a gate failed or is undecided, "
            "2 usage or campaign error, 3 the run could not complete."
        ),
    )
    parser.add_argument("--version", action="version", version=f"perfmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_run(sub)
    _add_attach(sub)
    _add_ls_stop(sub)
    _add_validate(sub)
    _add_report(sub)
    _add_compare(sub)
    _add_daemon(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon run CAMPAIGN``: the live viewer, or ``--headless`` for CI."""
    run = sub.add_parser(
        "run",
        help="run a campaign (with the live viewer, or --headless for CI)",
        description="Run a campaign file. With a terminal, the live viewer attaches to it.",
    )
    run.add_argument("campaign", help="the campaign file (TOML)")
    run.add_argument(
        "--headless",
        action="store_true",
        help="no viewer: a line per session, then the gate table; the exit status is the verdict",
    )
    run.add_argument(
        "--runs-dir",
        type=Path,
        help="where to create the run directory (default: the campaign's runs_dir)",
    )
    run.add_argument(
        "--theme", default="perfmon-dark", help="viewer theme (see themes/; default perfmon-dark)"
    )
    run.add_argument(
        "--refresh-hz", type=float, default=4.0, help="viewer redraws per second (default 4)"
    )
    run.add_argument(
        "--no-mouse",
        action="store_true",
        help="do not capture the mouse (handy over SSH and in tmux)",
    )
    run.add_argument(
        "--no-color",
        action="store_true",
        help="no colours in the viewer (as NO_COLOR=1 does); states stay readable as words",
    )
    run.add_argument(
        "--set",
        dest="set_sizes",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="resize a set: canary=120 (sessions) or canary=72h (duration); repeatable",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="start the run in the background, print its id and how to attach, and return",
    )
    run.add_argument(
        "--baseline-run",
        type=Path,
        metavar="DIR",
        help=(
            "judge the statistical gates (speedup, regression) against this recorded run's "
            "sessions of the baseline variant (implies --headless)"
        ),
    )
    run.add_argument(
        "--metrics-addr",
        metavar="[HOST:]PORT",
        help=(
            "serve Prometheus /metrics of the run there (e.g. 127.0.0.1:9464; a bare port "
            "listens on 127.0.0.1; any other address is used as given, with a warning)"
        ),
    )


def _add_attach(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon attach [RUN]``: the viewer on a running or finished run."""
    attach = sub.add_parser(
        "attach",
        help="open the viewer on a running or finished run",
        description="Attach the live viewer to a run (the newest running one by default).",
    )
    attach.add_argument("run", nargs="?", help="run id, id prefix or run directory")
    attach.add_argument(
        "--control", action="store_true", help="allow pause, stop and export from this viewer"
    )
    attach.add_argument("--theme", default="perfmon-dark", help="viewer theme")
    attach.add_argument("--refresh-hz", type=float, default=4.0, help="viewer redraws per second")
    attach.add_argument("--no-mouse", action="store_true", help="do not capture the mouse")
    attach.add_argument("--no-color", action="store_true", help="no colours in the viewer")


def _add_ls_stop(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon ls`` and ``perfmon stop [RUN]``."""
    sub.add_parser("ls", help="list runs: state, age, sessions, verdict")

    stop = sub.add_parser("stop", help="stop a running run gracefully (the report is written)")
    stop.add_argument("run", nargs="?", help="run id, id prefix or run directory")


def _add_validate(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon validate CAMPAIGN``: check a campaign and list what it would run."""
    validate = sub.add_parser("validate", help="check a campaign file and list what it would run")
    validate.add_argument("campaign", help="the campaign file (TOML)")
    validate.add_argument(
        "--set",
        dest="set_sizes",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="resize a set as perfmon run --set does",
    )


def _add_report(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon report RUN_DIR``: (re)write a run directory's report."""
    report = sub.add_parser("report", help="(re)write the report of a run directory")
    report.add_argument("run_dir", type=Path, help="a run directory (runs/<timestamp>-<campaign>)")
    report.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=("md", "json", "html", "csv", "junit", "github"),
        metavar="FORMAT",
        help=(
            "write only this format (md, json, html, csv, junit, github; repeatable); default: "
            "md, json, html, csv and junit into the run directory. github goes to stdout"
        ),
    )
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the (single) --format to FILE instead ('-': stdout)",
    )


def _add_compare(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon compare RUN_A RUN_B``: two recorded runs, metric by metric."""
    cmp_ = sub.add_parser(
        "compare",
        help="compare two recorded runs metric by metric (median, n, speedup with CI, p-value)",
    )
    cmp_.add_argument("run_a", type=Path, help="the reference run directory (A)")
    cmp_.add_argument("run_b", type=Path, help="the run compared with it (B)")
    cmp_.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="output format (default: an aligned table)",
    )
    cmp_.add_argument("--confidence", type=float, help="CI level (default: run A's campaign's)")
    cmp_.add_argument("--test", choices=("mannwhitney", "welch"), help="significance test")
    cmp_.add_argument("--seed", type=int, help="bootstrap seed")
    cmp_.add_argument("--resamples", type=int, help="bootstrap resamples")
    cmp_.add_argument(
        "--fail-if",
        dest="fail_if",
        action="append",
        default=[],
        metavar="EXPR",
        help=(
            'exit 1 when the data shows this gate expression, e.g. "regression(session_seconds)'
            " > 5%%\" (run A's sessions the baseline, run B's the candidate); repeatable"
        ),
    )
    cmp_.add_argument("--min-sessions", type=int, help="sessions per side before a ratio")
    cmp_.add_argument("--interval", choices=("rank", "bootstrap"), help="CI method")
    cmp_.add_argument(
        "--allow-mixed-hosts",
        action="store_true",
        help="compare runs recorded under different host fingerprints (refused by default)",
    )


def _add_daemon(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``perfmon _daemon``: the background process that owns a run (hidden)."""
    daemon = sub.add_parser("_daemon", help=argparse.SUPPRESS)
    daemon.add_argument("campaign")
    daemon.add_argument("--run-dir", type=Path, required=True)
    daemon.add_argument("--socket", type=Path, required=True)
    daemon.add_argument("--snapshot-hz", type=float, default=4.0)
    daemon.add_argument("--set", dest="set_sizes", action="append", default=[])
    daemon.add_argument("--metrics-addr")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``perfmon`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.whole_process = argv is None  # the command line is this process's (sys.orig_argv)
    if getattr(args, "no_color", False):
        os.environ["NO_COLOR"] = "1"  # honoured by Rich and Textual (https://no-color.org)
    try:
        if args.command is None:
            return _default(parser)
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "report":
            return _report(args)
        if args.command == "_daemon":
            return _daemon(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "attach":
            return _attach(args)
        if args.command == "ls":
            return _ls()
        if args.command == "stop":
            return _stop(args)
    except _CampaignFailure as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INCOMPLETE
    except Exception as exc:
        # A hostile runtime directory (symlink, another user's) is a usage error: one line,
        # exit 2. Imported here only, so that --version stays light.
        from perfmon.engine.registry import RuntimeDirError

        if isinstance(exc, RuntimeDirError):
            return _fail(str(exc))
        raise
    parser.error(f"unknown command {args.command!r}")


def _default(parser: argparse.ArgumentParser) -> int:
    if Path(DEFAULT_CAMPAIGN).is_file():
        return _run(parser.parse_args(["run", DEFAULT_CAMPAIGN]))
    samples = _samples_dir()
    print(f"perfmon {__version__}: no {DEFAULT_CAMPAIGN} in this directory.\n")
    print("Start with a campaign file:")
    print("  perfmon run CAMPAIGN.toml             live viewer")
    print("  perfmon run CAMPAIGN.toml --headless  for CI; exit status is the gate verdict")
    print("  perfmon validate CAMPAIGN.toml        check a campaign file")
    if samples is not None:
        rel = os.path.relpath(samples)
        print(f"\nBundled samples ({rel}/README.md explains them):")
        for toml in sorted(samples.glob("*.toml")):
            print(f"  perfmon run {os.path.relpath(toml)}")
    print("\nperfmon --help lists every command.")
    return EXIT_USAGE


def _runs_dir(campaign: Campaign, override: Path | None) -> Path:
    if override is not None:
        return override
    configured = getattr(campaign, "runs_dir", None)
    if configured is not None:
        return Path(configured)
    return Path(campaign.directory) / "runs"


def _run(args: argparse.Namespace) -> int:
    campaign = _load(args.campaign, args.set_sizes)
    for warning in campaign.warnings:  # what perfmon validate warns of (issue 11)
        print(f"perfmon: warning: {warning}", file=sys.stderr)
    import time

    from perfmon.engine.recorder import make_run_dir

    no_terminal = not (sys.stdin.isatty() and sys.stdout.isatty())
    if args.whole_process and not args.detach and (args.headless or no_terminal):
        # The headless runner lives in this process: give it the daemon's allocator (a heap
        # that stays flat over a long run, perfmon.engine.heap) before anything happens.
        from perfmon.engine.heap import reexec_with_system_malloc

        with contextlib.suppress(OSError):
            reexec_with_system_malloc()
    if not args.detach and not args.headless and no_terminal:
        print("perfmon: no terminal attached; running headless", file=sys.stderr)
        args.headless = True
    if args.detach or not args.headless:
        from perfmon.engine.registry import checked_runtime_dir

        checked_runtime_dir()  # a hostile runtime directory: exit 2 before any run directory
    metrics_error = _check_metrics_addr(getattr(args, "metrics_addr", None))
    if metrics_error:
        return _fail(metrics_error)
    runs_dir = _runs_dir(campaign, args.runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_dir = make_run_dir(runs_dir, campaign.name, time.time(), share=campaign.share)
    except OSError as exc:
        return _fail(f"cannot create a run directory in {runs_dir}: {exc}", EXIT_INCOMPLETE)
    if args.detach:
        return _start_detached(args, run_dir)
    if args.baseline_run is not None:
        if not (args.baseline_run / "manifest.json").is_file():
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            return _fail(f"--baseline-run {args.baseline_run}: not a run directory")
        if not args.headless:
            print("perfmon: --baseline-run runs headless", file=sys.stderr)
            args.headless = True
    if args.headless:
        from perfmon.engine.headless import run_headless

        return run_headless(
            campaign,
            run_dir,
            baseline_run=args.baseline_run,
            metrics_addr=getattr(args, "metrics_addr", None),
        )
    return _run_with_viewer(args, run_dir)


def _check_metrics_addr(text: str | None) -> str:
    """Check ``--metrics-addr`` before anything runs: "" when fine (or not given), else the
    error (an unparsable address, or one that cannot be bound now)."""
    if text is None:
        return ""
    import socket

    from perfmon.engine.prometheus import parse_metrics_addr

    try:
        addr = parse_metrics_addr(text)
        infos = socket.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except (ValueError, OSError) as exc:
        return f"--metrics-addr {text}: {exc}"
    return ""


def _spawn_daemon(
    args: argparse.Namespace, run_dir: Path, sock: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the campaign daemon in its own session (immune to the terminal's SIGHUP)."""
    from perfmon.engine.heap import daemon_environment
    from perfmon.engine.recorder import open_private

    daemon_log = run_dir / "daemon.log"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    with open(open_private(daemon_log, flags), "ab") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perfmon",
                "_daemon",
                str(Path(args.campaign).resolve()),
                "--run-dir",
                str(run_dir.resolve()),
                "--socket",
                str(sock),
                "--snapshot-hz",
                str(max(getattr(args, "refresh_hz", 4.0), 1.0)),
                *(f"--set={size}" for size in getattr(args, "set_sizes", [])),
                *(
                    ["--metrics-addr", args.metrics_addr]
                    if getattr(args, "metrics_addr", None)
                    else []
                ),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=daemon_environment(os.environ),  # PYTHONMALLOC=malloc: see engine/heap.py
        )
    return proc, daemon_log


def _run_with_viewer(args: argparse.Namespace, run_dir: Path) -> int:
    """Start the daemon in its own session, attach the viewer, and wait for the end."""
    from perfmon.engine.client import DaemonUnavailable, SocketClient
    from perfmon.engine.daemon import socket_path
    from perfmon.tui.app import PerfmonApp

    sock = socket_path(run_dir.name)
    client = SocketClient(sock)
    try:
        app = PerfmonApp(
            client, refresh_hz=args.refresh_hz, theme=args.theme, mouse=not args.no_mouse
        )
    except ValueError as exc:
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        return _fail(str(exc))
    proc, daemon_log = _spawn_daemon(args, run_dir, sock)
    try:
        client.connect(alive=lambda: proc.poll() is None)
    except DaemonUnavailable as exc:
        tail = daemon_log.read_text(errors="replace")[-2000:]
        return _fail(f"{exc}\n{tail}", EXIT_INCOMPLETE)
    return _view(app, client, pid=proc.pid, run_dir=run_dir, no_mouse=args.no_mouse)


def _start_detached(args: argparse.Namespace, run_dir: Path) -> int:
    """``perfmon run --detach``: start the daemon, wait until it serves, print how to attach."""
    from perfmon.engine.client import DaemonUnavailable, SocketClient
    from perfmon.engine.daemon import socket_path

    sock = socket_path(run_dir.name)
    proc, daemon_log = _spawn_daemon(args, run_dir, sock)
    client = SocketClient(sock, control=False)
    try:
        client.connect(alive=lambda: proc.poll() is None)
    except DaemonUnavailable as exc:
        tail = daemon_log.read_text(errors="replace")[-2000:]
        return _fail(f"{exc}\n{tail}", EXIT_INCOMPLETE)
    client.close()
    print(f"perfmon: started run {run_dir.name} (daemon pid {proc.pid})")
    print(f"perfmon: run dir {run_dir}")
    print(f"perfmon: watch it with   perfmon attach {run_dir.name}")
    print(f"perfmon: stop it with    perfmon stop {run_dir.name}")
    return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _view(app: Any, client: Any, *, pid: int, run_dir: Path, no_mouse: bool) -> int:
    """Run the viewer until it quits; if the run ended (or q stopped it), report its end."""
    app.run(mouse=not no_mouse)
    stopping = client.finished or getattr(app, "stop_requested", False)
    if stopping and not client.finished:
        print("perfmon: waiting for the run to stop and write its report…", file=sys.stderr)
        client.wait_finished()
    client.close()
    if client.end is not None:
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        end = client.end
        print(f"perfmon: verdict {str(end.get('verdict', '?')).upper()}")
        if end.get("report"):
            print(f"perfmon: report: {end['report']}")
        return int(end.get("exit_status", EXIT_INCOMPLETE))
    if _pid_alive(pid):
        print(
            "perfmon: the viewer closed; the run goes on in the background.\n"
            f"perfmon: run dir: {run_dir}\n"
            f"perfmon: attach again with: perfmon attach {run_dir.name}\n"
            f"perfmon: stop it with:      perfmon stop {run_dir.name}"
        )
        return 0
    return _fail(f"the run ended without a verdict; see {run_dir / 'daemon.log'}", EXIT_INCOMPLETE)


def _attach(args: argparse.Namespace) -> int:
    """``perfmon attach [RUN]``: the viewer on a running run, or on a finished run's record."""
    from perfmon.engine.client import DaemonUnavailable, SocketClient
    from perfmon.engine.registry import find_run
    from perfmon.tui.app import PerfmonApp

    try:
        entry = find_run(args.run)
    except LookupError as exc:
        if args.run and Path(args.run).is_dir():
            return _view_finished(args, Path(args.run))
        return _fail(str(exc))
    if entry.state != "running":
        return _view_finished(args, entry.run_dir)
    client = SocketClient(entry.socket, control=args.control)
    try:
        app = PerfmonApp(
            client, refresh_hz=args.refresh_hz, theme=args.theme, mouse=not args.no_mouse
        )
    except ValueError as exc:
        return _fail(str(exc))
    try:
        client.connect(alive=lambda: _pid_alive(entry.pid))
    except DaemonUnavailable:
        return _view_finished(args, entry.run_dir)
    return _view(app, client, pid=entry.pid, run_dir=entry.run_dir, no_mouse=args.no_mouse)


def _view_finished(args: argparse.Namespace, run_dir: Path) -> int:
    """Show a finished (or crashed) run from its recording."""
    from perfmon.engine.replay import RecordedRunSource, snapshot_from_run_dir
    from perfmon.tui.app import PerfmonApp

    try:
        snap = snapshot_from_run_dir(run_dir)
    except (OSError, ValueError) as exc:
        return _fail(f"{run_dir}: cannot read the run: {exc}")
    try:
        app = PerfmonApp(
            RecordedRunSource(run_dir, snap),
            refresh_hz=args.refresh_hz,
            theme=args.theme,
            mouse=not args.no_mouse,
        )
    except ValueError as exc:
        return _fail(str(exc))
    app.run(mouse=not args.no_mouse)
    return 0


def _ls() -> int:
    """``perfmon ls``: the runs this user started, newest first."""
    from perfmon.core.units import format_duration
    from perfmon.engine.registry import list_runs

    runs = list_runs()
    if not runs:
        print("no runs yet: start one with  perfmon run CAMPAIGN.toml --detach")
        return 0
    now = time.time()
    rows = [("run", "state", "age", "sessions", "verdict", "run dir")]
    for r in runs:
        verdict = (r.verdict or "").upper() or (
            "so far: see attach" if r.state == "running" else "–"
        )
        rows.append(
            (
                r.run_id,
                r.state,
                format_duration(now - r.started_t),
                str(r.sessions_done),
                verdict,
                str(r.run_dir),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print(
            "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)) + "  " + row[5]
        )
    return 0


def _stop(args: argparse.Namespace) -> int:
    """``perfmon stop [RUN]``: ask the daemon to stop; wait for its report."""
    from perfmon.engine.client import DaemonUnavailable, SocketClient
    from perfmon.engine.registry import find_run

    try:
        entry = find_run(args.run)
    except LookupError as exc:
        return _fail(str(exc))
    if entry.state != "running":
        return _fail(f"run {entry.run_id} is not running ({entry.state})")
    client = SocketClient(entry.socket, control=True)
    print(f"perfmon: stopping {entry.run_id}; waiting for its report…")
    try:
        client.connect(timeout_s=5, alive=lambda: _pid_alive(entry.pid))
        client.send("stop")
        client.wait_finished(timeout_s=300)
    except (DaemonUnavailable, OSError):
        # The socket is gone but the daemon lives: SIGTERM stops it just as cleanly.
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry.pid, signal.SIGTERM)
        deadline = time.monotonic() + 300
        while _pid_alive(entry.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.close()
    end = client.end or {}
    report = end.get("report") or (
        str(entry.run_dir / "report.md") if (entry.run_dir / "report.md").is_file() else None
    )
    if report is None:
        return _fail(f"run {entry.run_id} stopped without writing a report", EXIT_INCOMPLETE)
    verdict = str(end.get("verdict") or "see report").upper()
    print(f"perfmon: verdict {verdict}; report: {report}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    campaign = _load(args.campaign, args.set_sizes)
    from perfmon.core.schedule import Scheduler
    from perfmon.core.units import format_duration

    scheduler = Scheduler(campaign, sys.executable)
    total = scheduler.planned_total
    _say(f"{args.campaign}: campaign {campaign.name!r} is valid")
    _say(f"  workloads: {', '.join(w.name for w in campaign.workloads)}")
    _say(f"  variants:  {', '.join(v.name for v in campaign.variants)}")
    for s in campaign.sets:
        size = (
            f"{s.sessions} sessions"
            if s.sessions
            else f"for {format_duration(s.duration_s or 0.0)} (h:mm:ss)"
        )
        _say(f"  set {s.name}: {size}, warmup {s.warmup}, order {s.order}")
    print(f"  sessions planned: {total if total is not None else 'open-ended (duration set)'}")
    for name in ("", *(s.name for s in campaign.sets if s.noise is not None)):
        guard = campaign.noise_guard(name) if name else campaign.noise
        action = "mark" if guard.on_noisy == "mark" else f"repeat (at most {guard.retries}x)"
        where = f" (set {name})" if name else ""
        print(f"  noise guard{where}: background CPU over {guard.limit:.0%} -> {action}")
    for g in campaign.gates:
        by = f" (by {', '.join(g.by)})" if g.by else ""
        _say(f"  gate {g.name!r}: {g.expr}{by}")
    for warning in campaign.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if campaign.warnings:
        n = len(campaign.warnings)
        print(f"  {n} warning{'s' if n > 1 else ''} (the campaign can run)", file=sys.stderr)
    if campaign.executor.kind == "ray":
        return _validate_ray(campaign)
    return 0


def _validate_ray(campaign: Campaign) -> int:
    """``[executor] kind = "ray"``: check every placement against the cluster (exit 2 when
    no node can take one; a cluster that cannot be reached is said, not an error)."""
    from perfmon.engine.ray_executor import RayExecutorError, check_placements

    pairs = [(w.name, v.name) for w in campaign.workloads for v in campaign.variants] or [
        (w.name, "default") for w in campaign.workloads
    ]
    try:
        problems = check_placements(campaign.executor, pairs)
    except RayExecutorError as exc:
        _say(f"  executor: ray at {campaign.executor.address!r}; placements not checked: {exc}")
        return 0
    if problems:
        return _fail(f"{campaign.path}: " + "; ".join(problems))
    _say(f"  executor: ray at {campaign.executor.address!r}; every placement has a node")
    return 0


def _report(args: argparse.Namespace) -> int:
    """``perfmon report RUN_DIR``: exit 0 when the report was written from an intact recording
    (a crash's torn tail included: it is repaired, counted and shown; the verdict is printed,
    not the exit status, as before), 1 when damage beyond a torn tail was found (the report is
    written with what could be read and says what was lost under "Damage found": it cannot
    vouch for its verdict), 2 when RUN_DIR is not a run directory, 3 when the report cannot be
    written."""
    from perfmon.engine.report import NotARunDirectory, report_run_dir

    try:
        if args.formats or args.output is not None:
            manifest = _report_manifest(args.run_dir)
            if isinstance(manifest, int):
                return manifest
            return _report_formats(args, manifest)
        md, v, report = report_run_dir(args.run_dir)
    except NotARunDirectory as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.run_dir}: cannot write the report: {exc}", EXIT_INCOMPLETE)
    rec = report["recording"]
    others = [
        md.with_name(name)
        for name in ("report.json", "report.html", "report.csv", "junit.xml")
        if md.with_name(name).is_file()
    ]
    print("report: " + "\n        ".join(str(p) for p in [md, *others]) + f"\nverdict: {v.upper()}")
    if rec["damage_found"]:
        print(
            f"damage found: {len(rec['problems'])} problem(s), "
            f"{rec['samples_lost']:,} samples known lost (see report.md)",
            file=sys.stderr,
        )
    return 1 if rec["data_lost"] else 0


def _report_manifest(run_dir: Path) -> dict[str, Any] | int:
    """The run's manifest for ``--format``, or the exit status of a clear error (2)."""
    import json

    manifest_path = run_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        gates = manifest["campaign"]["gates"]
        if not isinstance(gates, list):
            raise TypeError(f"gates is {type(gates).__name__}, not a list")
    except (OSError, ValueError) as exc:
        return _fail(f"{manifest_path}: not a readable run manifest: {exc}")
    except (KeyError, TypeError) as exc:
        return _fail(f"{manifest_path}: not a perfmon run manifest (campaign.gates: {exc})")
    return manifest if isinstance(manifest, dict) else _fail(f"{manifest_path}: not a manifest")


def _report_formats(args: argparse.Namespace, manifest: dict[str, Any]) -> int:
    """``perfmon report RUN --format F [-o FILE]``: render chosen formats, nothing else."""
    from perfmon.engine.exporters import FILE_NAMES, render
    from perfmon.engine.recorder import atomic_write_text
    from perfmon.engine.report import build_report
    from perfmon.engine.runner import evaluate_recorded_gates_by_set

    formats = list(dict.fromkeys(args.formats or ["md"]))
    if args.output is not None and len(formats) != 1:
        return _fail("-o/--output takes exactly one --format")
    try:
        gates = manifest["campaign"]["gates"]
        recorded, data = evaluate_recorded_gates_by_set(gates, args.run_dir)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        return _fail(f"{args.run_dir}: cannot evaluate the run's gates: {exc}")
    from perfmon.core.gates import verdict

    v = verdict(recorded.run).value
    report = build_report(data, recorded.run, verdict=v, set_results=recorded.per_set)
    for fmt in formats:
        try:
            text = render(fmt, report, data)
        except ImportError as exc:
            return _fail(f"--format {fmt} needs {exc.name or exc}: pip install matplotlib")
        target = args.output
        if target is None and fmt == "github":
            target = Path("-")
        if target is not None and str(target) == "-":
            sys.stdout.write(text)
            continue
        path = target if target is not None else args.run_dir / FILE_NAMES[fmt]
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            return _fail(f"cannot write {path}: {exc}", EXIT_INCOMPLETE)
        print(f"report: {path}", file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from perfmon.engine.compare import compare_runs, render_rows_markdown, render_rows_text
    from perfmon.engine.recorded import stored_stats_options
    from perfmon.engine.recorder import read_run_meta

    for run_dir in (args.run_a, args.run_b):
        if not (run_dir / "manifest.json").is_file():
            return _fail(f"{run_dir}: not a run directory (no manifest.json)")
    try:
        # a damaged manifest gives the default options; the damage is reported below
        options, _ = stored_stats_options(read_run_meta(args.run_a).manifest)
        overrides = {
            k: v
            for k, v in (
                ("confidence", args.confidence),
                ("test", args.test),
                ("seed", args.seed),
                ("resamples", args.resamples),
                ("min_sessions", args.min_sessions),
                ("interval", args.interval),
            )
            if v is not None
        }
        options = dataclasses.replace(options, **overrides)
    except (OSError, ValueError) as exc:
        return _fail(f"compare: {exc}")
    from perfmon.engine.compare import MixedHostsRefused

    if args.fail_if:
        return _compare_fail_if(args, options)
    try:
        rows, meta = compare_runs(
            args.run_a, args.run_b, options, allow_mixed_hosts=args.allow_mixed_hosts
        )
    except MixedHostsRefused as exc:
        return _fail(f"compare: {exc}")
    if args.format == "json":
        print(json.dumps({**meta, "rows": [r.to_json() for r in rows]}, indent=2))
    elif args.format == "markdown":
        print(f"A: `{args.run_a}`, B: `{args.run_b}`\n")
        print("\n".join(render_rows_markdown(rows, meta["options"])))
    else:
        print(f"A: {args.run_a}\nB: {args.run_b}\n")
        print(render_rows_text(rows, meta["options"]), end="")
    damage = meta["damage"]
    for label, run_dir in (("A", args.run_a), ("B", args.run_b)):
        problems = damage[f"run_{label.lower()}"]
        if problems:
            print(
                f"damage found in {label} ({run_dir}): {len(problems)} problem(s)", file=sys.stderr
            )
            for p in problems[:20]:
                print(f"  {p}", file=sys.stderr)
    return 1 if damage["data_lost"] else 0


def _compare_fail_if(args: argparse.Namespace, options: Any) -> int:
    """``perfmon compare A B --fail-if EXPR``: 1 when the data shows a condition, else 0."""
    from perfmon.core.gates import GateSyntaxError
    from perfmon.engine.compare import MixedHostsRefused, judge_fail_if

    try:
        results = judge_fail_if(
            args.run_a,
            args.run_b,
            args.fail_if,
            options,
            allow_mixed_hosts=args.allow_mixed_hosts,
        )
    except GateSyntaxError as exc:
        return _fail(f"--fail-if: {exc}")
    except MixedHostsRefused as exc:
        return _fail(f"compare: {exc}")
    print(f"A (baseline): {args.run_a}\nB (candidate): {args.run_b}")
    shown = False
    for r in results:
        word = {
            "shown": "SHOWN: failing",
            "not shown": "NOT SHOWN: the data shows the opposite",
            "undecided": "UNDECIDED: the data shows neither (not failing)",
        }[r.outcome]
        print(f"\nfail-if {r.expr!r}: {word}")
        for line in r.lines:
            print(f"  {line}")
        shown |= r.outcome == "shown"
    return 1 if shown else 0


def _daemon(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from perfmon.engine.daemon import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(
        serve(
            Path(args.campaign),
            args.run_dir,
            args.socket,
            snapshot_hz=args.snapshot_hz,
            set_sizes=args.set_sizes,
            metrics_addr=args.metrics_addr,
        )
    )
