"""The read path: one interface, two backends (owner RPC and Redis)."""

from liftline.reads.base import Reader, ReadResult
from liftline.reads.owner import OwnerReader
from liftline.reads.redis_reader import RedisReader

__all__ = ["OwnerReader", "ReadResult", "Reader", "RedisReader"]
