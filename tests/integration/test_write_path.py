"""The write path end to end on real RabbitMQ and Redis."""

from __future__ import annotations

import random
import threading
from typing import Any

import pika
import pytest
from pipeline import Model, memory_state, mixed_load, redis_state, wait_flushed

from liftline import Producer, codec
from liftline.errors import InvalidWrite
from liftline.partitioning import partition_for
from liftline.queue.topology import Names
from liftline.store.redis_store import RedisStore


def test_100k_mixed_writes_from_4_threads_match_a_fold(settings, workers, redis_client):
    workers.start()
    model, lock, futures = Model(), threading.Lock(), []
    with Producer(settings) as producer:
        threads = [threading.Thread(target=mixed_load,
                                    args=(producer, n, 25_000, model, lock, futures))
                   for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert len(futures) == 100_000
    tickets = [f.ticket for f in futures]
    assert len(set(tickets)) == 100_000
    wait_flushed(redis_client, settings, tickets)
    expected = model.values
    assert redis_state(redis_client, settings) == expected
    in_memory = memory_state(settings, sorted(expected) + ["never-written"])
    assert in_memory == expected


def test_submit_many_from_4_threads_beside_single_writes_matches_a_fold(
        settings, workers, redis_client):
    workers.start()
    model, calls = Model(), []
    lock = threading.Lock()

    def load(n: int) -> None:
        rng = random.Random(n)
        for c in range(20):
            writes: list[tuple[Any, ...]] = []
            for i in range(500):
                roll = rng.random()
                if roll < 0.5:
                    writes.append(("incr", f"shared:{rng.randrange(300)}", rng.choice([1, 2])))
                elif roll < 0.8:
                    writes.append(("set", f"t{n}:k{rng.randrange(500)}", [c, i]))
                else:
                    writes.append(("append", f"t{n}:l{rng.randrange(50)}", i, 3))
            futures = producer.submit_many(writes)
            with lock:
                calls.append((writes, futures))

    with Producer(settings) as producer:
        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        singles = [producer.submit("incr", f"shared:{i % 300}", 10) for i in range(2000)]
        for t in threads:
            t.join(120)
        tickets = [f.result(60) for f in singles]
        for writes, futures in calls:
            tickets += futures.result(60)
            for write in writes:
                model.apply(*write)
    for i in range(2000):
        model.apply("incr", f"shared:{i % 300}", 10)
    assert len(calls) == 80 and len(tickets) == 42_000 == len(set(tickets))
    wait_flushed(redis_client, settings, tickets)
    expected = model.values
    assert redis_state(redis_client, settings) == expected
    assert memory_state(settings, sorted(expected)) == expected


def test_republished_batch_is_applied_once(settings, workers, redis_client):
    workers.start()
    with Producer(settings) as producer:
        ticket = producer.incr("counter", 1)
    names = Names(settings.cluster)
    partition = partition_for("counter", settings.partitions)
    # The same producer id and sequence numbers again, as after a lost confirm.
    body = codec.pack_batch(ticket.producer_id, ticket.seq,
                            [codec.pack_write("incr", "counter", 1)])
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for _ in range(3):
            ch.basic_publish(names.exchange, Names.routing_key(partition), body, mandatory=True)
    finally:
        conn.close()
    with Producer(settings) as producer:
        later = producer.incr("counter", 10)
    wait_flushed(redis_client, settings, [ticket, later])
    assert redis_state(redis_client, settings)["counter"] == 11
    assert memory_state(settings, ["counter"]) == {"counter": 11}


def test_bad_input_is_refused_or_dead_lettered_and_the_rest_applied(
        settings, workers, redis_client):
    workers.start()
    with Producer(settings) as producer:
        with pytest.raises(InvalidWrite, match="512 bytes"):
            producer.submit("set", "k" * 513, 1)
        with pytest.raises(InvalidWrite, match="65536"):
            producer.submit("set", "big", "x" * 70_000)
        with pytest.raises(InvalidWrite, match="int or float"):
            producer.submit("incr", "n", "one")
        with pytest.raises(InvalidWrite, match="nested deeper"):
            nested: list = []
            for _ in range(40):
                nested = [nested]
            producer.submit("set", "deep", nested)
        before = producer.put("name", "ski")
        unknown = producer.submit("lift_ride", "rides", 3)       # no such reducer
        wrong_type = producer.submit("incr", "name", 1)          # incr on a string
        after = producer.incr("n", 2)
        unknown.result(10)
        wrong_type.result(10)
    # Garbage straight into a stream, between good writes.
    names = Names(settings.cluster)
    garbage_partition = partition_for("n", settings.partitions)
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(names.exchange, Names.routing_key(garbage_partition), b"\xc1garbage")
        ch.basic_publish(names.exchange, Names.routing_key(garbage_partition),
                         codec.pack([1, "w", "x", 0, []]))
    finally:
        conn.close()
    with Producer(settings) as producer:
        last = producer.incr("n", 3)
    wait_flushed(redis_client, settings, [before, after, last, unknown.ticket,
                                          wrong_type.ticket])
    state = redis_state(redis_client, settings)
    assert state == {"name": "ski", "n": 5}
    letters = RedisStore(redis_client, settings.cluster).dead_letters(settings.partitions)
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 4, letters
    assert any("unknown op 'lift_ride'" in r for r in reasons)
    assert any("incr on a str value" in r for r in reasons)
    assert any("not valid msgpack" in r for r in reasons)
    assert any("first_seq" in r for r in reasons)
    garbage = [x for x in letters if "msgpack" in x["reason"]][0]
    assert garbage["partition"] == garbage_partition and garbage["offset"] >= 0


def test_an_unroutable_batch_fails_its_writes(settings):
    from liftline.errors import PublishFailed

    # The exchange exists but no partition stream is bound to it.
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        conn.channel().exchange_declare(Names(settings.cluster).exchange, "direct", durable=True)
    finally:
        conn.close()
    producer = Producer(settings, declare=False)
    try:
        future = producer.submit("incr", "k", 1)
        error = future.exception(30)
        assert isinstance(error, PublishFailed) and "unroutable" in str(error)
    finally:
        producer.close()
