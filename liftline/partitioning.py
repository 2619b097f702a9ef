"""Key → partition, and partition → owners.

The hash must be identical in every process and every Python version, so it is
CRC-32 of the key's UTF-8 bytes, never the built-in ``hash()`` (randomized per
process). The number of partitions is fixed per cluster: adding workers moves
whole partitions and never re-hashes a key.
"""

from __future__ import annotations

import zlib


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``; stable across processes and hosts."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions
