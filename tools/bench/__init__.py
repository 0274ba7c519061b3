"""rawbpf benchmarks: ``python -m tools.bench`` (``make bench``) measures; writes bench/results.json.

Each section is its own module with ``run(ctx) -> dict``; a section whose piece is missing records an error
string instead of numbers, so one missing piece never hides the others' figures. Needs root.
"""
