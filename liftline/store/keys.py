"""Every Redis key name liftline uses, and nothing else: no module builds one itself.

Each partition's keys share one hash tag, so the flush script touches a single
slot and runs unchanged on a Redis Cluster."""

from __future__ import annotations


class Keys:
    """Key names of one cluster namespace."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.meta = f"ll:{cluster}:meta"
        self.members = f"ll:{cluster}:members"
        self.owners = f"ll:{cluster}:owners"

    @property
    def patterns(self) -> tuple[str, ...]:
        """SCAN patterns that together match every key of this cluster."""
        return (f"ll:{self.cluster}:*", f"ll:{{{self.cluster}.p*")

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

    def gaps(self, partition: int) -> str:
        """Producer id → its seqs missing from the partition's stream (msgpack ranges)."""
        return self._p(partition, "gaps")

    def member(self, member_id: str) -> str:
        return f"ll:{self.cluster}:member:{member_id}"

    # -- jobs ----------------------------------------------------------------
    def job(self, job_id: str) -> str:
        """A job's status record (hash)."""
        return f"ll:{self.cluster}:job:{job_id}"

    def job_stats(self, name: str) -> str:
        """Counters of one job name (hash)."""
        return f"ll:{self.cluster}:jobstats:{name}"

    @property
    def job_names(self) -> str:
        """The job names ever seen (set)."""
        return f"ll:{self.cluster}:jobnames"

    def job_rate(self, name: str, minute: int) -> str:
        """Successes of one job name in one minute since the epoch (counter)."""
        return f"ll:{self.cluster}:jobrate:{name}:{minute}"

    # -- autoscaler ----------------------------------------------------------
    @property
    def autoscale(self) -> str:
        """The autoscaler's latest decisions and pool (hash)."""
        return f"ll:{self.cluster}:autoscale"

    @property
    def autoscale_samples(self) -> str:
        """One JSON line per autoscaler evaluation, newest last (list)."""
        return f"ll:{self.cluster}:autoscale:samples"

    # -- ingest ----------------------------------------------------------------
    @property
    def ingest_stats(self) -> str:
        """Per-route request counts, total and largest latency of every ingest
        process of the cluster, summed (hash: ``<METHOD> <route>|n|us|max``)."""
        return f"ll:{self.cluster}:ingest:stats"
