"""liftline: fast acknowledged keyed writes, applied later, reliably.

The names below are handed on lazily: ``import liftline.codec`` (or any core
module) loads neither pika nor redis; ``liftline.Producer`` does, on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and editors only; nothing is imported at run time
    from liftline.app import App
    from liftline.errors import LiftlineError
    from liftline.producer import Producer, WriteFuture
    from liftline.settings import Settings
    from liftline.tickets import Ticket

# name -> the module that defines it
_EXPORTS = {
    "App": "liftline.app",
    "LiftlineError": "liftline.errors",
    "Producer": "liftline.producer",
    "Settings": "liftline.settings",
    "Ticket": "liftline.tickets",
    "WriteFuture": "liftline.producer",
}

__all__ = ["App", "LiftlineError", "Producer", "Settings", "Ticket", "WriteFuture"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'liftline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
