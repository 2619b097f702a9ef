"""Producing writes: the Python Producer client."""

from liftline.producer.client import Producer
from liftline.producer.futures import WriteFuture

__all__ = ["Producer", "WriteFuture"]
