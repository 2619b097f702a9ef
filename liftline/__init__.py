"""liftline: fast acknowledged keyed writes, applied later, reliably."""

from liftline.app import App
from liftline.errors import LiftlineError
from liftline.producer import Producer, Ticket, WriteFuture
from liftline.settings import Settings

__all__ = ["App", "LiftlineError", "Producer", "Settings", "Ticket", "WriteFuture"]
__version__ = "0.1.0"
