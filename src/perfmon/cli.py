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
import sys
from pathlib import Path
from typing import NoReturn

from perfmon._version import __version__

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
    print(f"perfmon: error: {message}", file=sys.stderr)
    return status


def _load(path: str) -> object:
    """Load a campaign, turning every CampaignError into one line on stderr and status 2."""
    from perfmon.core.campaign import CampaignError, load_campaign

    try:
        return load_campaign(path)
    except CampaignError as exc:
        raise _CampaignFailure(str(exc)) from None


class _CampaignFailure(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for tests and for ``--help``)."""
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

    validate = sub.add_parser("validate", help="check a campaign file and list what it would run")
    validate.add_argument("campaign", help="the campaign file (TOML)")

    report = sub.add_parser("report", help="(re)write the report of a run directory")
    report.add_argument("run_dir", type=Path, help="a run directory (runs/<timestamp>-<campaign>)")

    daemon = sub.add_parser("_daemon", help=argparse.SUPPRESS)
    daemon.add_argument("campaign")
    daemon.add_argument("--run-dir", type=Path, required=True)
    daemon.add_argument("--socket", type=Path, required=True)
    daemon.add_argument("--snapshot-hz", type=float, default=4.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``perfmon`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except _CampaignFailure as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INCOMPLETE
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


def _runs_dir(campaign: object, override: Path | None) -> Path:
    if override is not None:
        return override
    configured = getattr(campaign, "runs_dir", None)
    if configured is not None:
        return Path(configured)
    return Path(campaign.directory) / "runs"


def _run(args: argparse.Namespace) -> int:
    campaign = _load(args.campaign)
    import time

    from perfmon.engine.recorder import make_run_dir

    runs_dir = _runs_dir(campaign, args.runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_dir = make_run_dir(runs_dir, campaign.name, time.time())
    except OSError as exc:
        return _fail(f"cannot create a run directory in {runs_dir}: {exc}", EXIT_INCOMPLETE)
    if not args.headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("perfmon: no terminal attached; running headless", file=sys.stderr)
        args.headless = True
    if args.headless:
        from perfmon.engine.headless import run_headless

        return run_headless(campaign, run_dir)  # type: ignore[arg-type]
    return _run_with_viewer(args, run_dir)


def _run_with_viewer(args: argparse.Namespace, run_dir: Path) -> int:
    """Start the daemon in its own session, attach the viewer, and wait for the end."""
    import subprocess

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
    daemon_log = run_dir / "daemon.log"
    with open(daemon_log, "ab") as log_file:
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
                str(max(args.refresh_hz, 1.0)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    try:
        client.connect(alive=lambda: proc.poll() is None)
    except DaemonUnavailable as exc:
        tail = daemon_log.read_text(errors="replace")[-2000:]
        return _fail(f"{exc}\n{tail}", EXIT_INCOMPLETE)
    app.run(mouse=not args.no_mouse)
    stopping = client.finished or getattr(app, "stop_requested", False)
    if stopping and not client.finished:
        print("perfmon: waiting for the run to stop and write its report…", file=sys.stderr)
        client.wait_finished()
    client.close()
    if client.end is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        end = client.end
        print(f"perfmon: verdict {str(end.get('verdict', '?')).upper()}")
        if end.get("report"):
            print(f"perfmon: report: {end['report']}")
        return int(end.get("exit_status", EXIT_INCOMPLETE))
    if proc.poll() is None:
        print(
            f"perfmon: the viewer closed; the run goes on in the background (pid {proc.pid}).\n"
            f"perfmon: run dir: {run_dir}\nperfmon: stop it with: kill {proc.pid}"
        )
        return 0
    return _fail(f"the run ended without a verdict; see {daemon_log}", EXIT_INCOMPLETE)


def _validate(args: argparse.Namespace) -> int:
    campaign = _load(args.campaign)
    from perfmon.core.schedule import Scheduler

    scheduler = Scheduler(campaign, sys.executable)  # type: ignore[arg-type]
    total = scheduler.planned_total
    print(f"{args.campaign}: campaign {campaign.name!r} is valid")
    print(f"  workloads: {', '.join(w.name for w in campaign.workloads)}")
    print(f"  variants:  {', '.join(v.name for v in campaign.variants)}")
    for s in campaign.sets:
        size = f"{s.sessions} sessions" if s.sessions else f"for {s.duration_s:g} s"
        print(f"  set {s.name}: {size}, warmup {s.warmup}, order {s.order}")
    print(f"  sessions planned: {total if total is not None else 'open-ended (duration set)'}")
    for g in campaign.gates:
        print(f"  gate {g.name!r}: {g.expr}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from perfmon.core.gates import verdict
    from perfmon.engine.report import build_report, write_report
    from perfmon.engine.runner import evaluate_recorded_gates

    manifest_path = args.run_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"{manifest_path}: not a readable run manifest: {exc}")
    results, data = evaluate_recorded_gates(manifest["campaign"]["gates"], args.run_dir)
    v = verdict(results).value if results else "pass"
    md, js = write_report(args.run_dir, build_report(data, results, verdict=v))
    print(f"report: {md}\n        {js}\nverdict: {v.upper()}")
    return 0


def _daemon(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from perfmon.engine.daemon import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(
        serve(Path(args.campaign), args.run_dir, args.socket, snapshot_hz=args.snapshot_hz)
    )
