"""Benchmarks of the liftline write path: ``python -m benchmarks.run`` (or ``make bench``).

Scenarios: the Producer alone, the same ops written straight to Redis (the
baseline), one worker applying a backlog, and the pipeline end to end. Results
go to ``benchmarks/results/latest.md`` and ``latest.json``.
"""
