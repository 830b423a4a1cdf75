"""perfmon: a terminal performance monitor for benchmark campaigns.

Importing ``perfmon`` is cheap: it imports nothing but the version. The layers live in
``perfmon.core`` (pure model, config, statistics, gates), ``perfmon.engine`` (processes, files,
sockets) and ``perfmon.tui`` (the Textual viewer). Workloads use ``from perfmon import probe``.
"""

from perfmon._version import __version__

__all__ = ["__version__"]
