"""Benchmarks (``make bench``; each also runs alone: ``python -m benchmarks.p1_trigger_fleet --scale 0.1``).

Every figure is taken side by side with a baseline in the same run: on small, shared machines only the ratios
and the medians mean something. Results go to ``benchmarks/results/<name>.json`` (git-ignored).
"""
