"""perfmon's version, kept in one place so that ``perfmon --version`` imports nothing else."""

__version__ = "0.1.0"
