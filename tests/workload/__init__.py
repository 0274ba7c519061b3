"""A scripted, Claude-like workload for the monitor's end-to-end tests and ``make demo``."""
