"""Example liftline applications (importable as ``examples.<name>`` from the repo root)."""
