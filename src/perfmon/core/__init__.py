"""perfmon's pure core: no Textual, no subprocesses, no files, no engine or TUI imports."""
