"""The read path: one interface, two backends (owner RPC and Redis), one protocol
(:mod:`~liftline.reads.protocol`) and one client core (:mod:`~liftline.reads.core`)."""

from liftline.reads.base import NotApplied, Reader, ReadResult, TicketStatus
from liftline.reads.owner import OwnerReader
from liftline.reads.redis_reader import RedisReader

__all__ = ["NotApplied", "OwnerReader", "ReadResult", "Reader", "RedisReader", "TicketStatus"]
