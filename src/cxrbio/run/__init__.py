"""The run directory's contract: layout, config, stamps, atomic writes and the readers of run files."""
