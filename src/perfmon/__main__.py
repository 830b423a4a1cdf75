"""``python -m perfmon`` is the ``perfmon`` command."""

from perfmon.cli import main

raise SystemExit(main())
