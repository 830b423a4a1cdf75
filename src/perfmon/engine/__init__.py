"""perfmon's engine: sessions as subprocesses, samplers, the recorder, reports, the daemon."""
