"""Redis key names. Each partition's keys share one hash tag, so the flush
script touches a single slot and runs unchanged on a Redis Cluster."""

from __future__ import annotations


class Keys:
    """Key names of one cluster namespace."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.meta = f"ll:{cluster}:meta"
        self.members = f"ll:{cluster}:members"
        self.owners = f"ll:{cluster}:owners"

    def _p(self, partition: int, what: str) -> str:
        return f"ll:{{{self.cluster}.p{partition}}}:{what}"

    def data(self, partition: int) -> str:
        return self._p(partition, "data")

    def state(self, partition: int) -> str:
        return self._p(partition, "state")

    def watermarks(self, partition: int) -> str:
        return self._p(partition, "wm")

    def dead(self, partition: int) -> str:
        return self._p(partition, "dead")

    def member(self, member_id: str) -> str:
        return f"ll:{self.cluster}:member:{member_id}"
