"""Autoscaling the worker pool by backlog (stream lag in writes + job queue depth).

``backlog`` reads it, ``policy`` turns it into a worker count, ``scalers``
apply that count (local process pool, docker compose, a command), ``loop``
runs them every interval, ``metrics`` exports Prometheus gauges and ``record``
keeps the decisions in Redis for `liftline status`.
"""

from __future__ import annotations

from liftline.autoscale.policy import Decision, Policy, PolicyConfig

__all__ = ["Decision", "Policy", "PolicyConfig"]
