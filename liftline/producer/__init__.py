"""Producing writes: the Python Producer client (and the HTTP ingest service)."""

from liftline.producer.client import Producer
from liftline.producer.tickets import Ticket, WriteFuture

__all__ = ["Producer", "Ticket", "WriteFuture"]
