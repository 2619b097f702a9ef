"""Scaler backends behind one interface (:class:`Scaler`): local pool, compose, command."""

from __future__ import annotations

from pathlib import Path

from liftline.autoscale.scalers.base import DryRun, Scaler
from liftline.autoscale.scalers.command import CommandScaler
from liftline.autoscale.scalers.compose import ComposeScaler
from liftline.autoscale.scalers.local import LocalPool
from liftline.settings import Settings

__all__ = ["CommandScaler", "ComposeScaler", "DryRun", "LocalPool", "Scaler", "make_scaler"]


def make_scaler(settings: Settings, *, log_dir: Path, app: str | None = None,
                worker_args: tuple[str, ...] = (), start: int = 0) -> Scaler:
    """The backend named by ``settings.autoscale_backend``.

    ``start`` is the count the command backend assumes before its first run
    (the live workers), since it cannot ask the system it drives.
    """
    backend = settings.autoscale_backend
    if backend == "compose":
        return ComposeScaler(settings.autoscale_service)
    if backend == "command":
        return CommandScaler(settings.autoscale_command, start)
    return LocalPool(settings, log_dir, app=app, worker_args=worker_args)
