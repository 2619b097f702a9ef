"""Job modules of the jobs benchmark: the same no-op job for liftline, Celery and Dramatiq.

Each module reads its servers and names from ``BENCH_PEER_*`` environment variables
(set by ``benchmarks.jobs`` for the worker process, and in the benchmark process
before it imports the module), so the worker command lines stay the plain ones:

- ``BENCH_PEER_AMQP_URL``, ``BENCH_PEER_REDIS_URL``: the run's RabbitMQ and Redis;
- ``BENCH_PEER_QUEUE``: the queue the job goes to (Celery, Dramatiq);
- ``BENCH_PEER_COUNTER``: the Redis key every finished job increments (INCR), so
  "all N done" is measured the same way for all three;
- ``BENCH_PEER_CONFIRM``: "1" to publish with publisher confirms (Celery, Dramatiq).
"""
