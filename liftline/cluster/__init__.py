"""The cluster as the rest of liftline sees it: who is a member, who owns which
partition, and what a cluster needs before it can take writes.

- :mod:`~liftline.cluster.registry`: members' heartbeats and reports in Redis,
  the owners hash, the holders of each partition;
- :mod:`~liftline.cluster.bootstrap`: create or check a cluster (its partition
  count in Redis) and declare its streams in RabbitMQ.

It sits above :mod:`liftline.store` and :mod:`liftline.queue` and below every
component (workers, reads, ingest, autoscale, status, the local stack).
"""
