"""perfmon's Textual viewer of run snapshots. Imports Textual; nothing below it imports this."""
