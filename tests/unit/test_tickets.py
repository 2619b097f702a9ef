"""Tickets as text (liftline.tickets), and the batches and futures that deliver them."""

from __future__ import annotations

import secrets
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftline.errors import InvalidWrite, PublishFailed, Timeout
from liftline.producer.futures import WriteFuture
from liftline.queue.batch import Batch
from liftline.tickets import Ticket


def test_a_ticket_reads_as_partition_producer_seq() -> None:
    assert str(Ticket(3, "a1b2c3d4e5f60718", 42)) == "3.a1b2c3d4e5f60718.42"


@pytest.mark.parametrize(
    "ticket",
    [Ticket(0, "p", 1), Ticket(15, "a1b2c3d4e5f60718", 2**63 - 1), Ticket(4095, "svc-1_x", 7)],
)
def test_ticket_round_trips_through_text(ticket: Ticket) -> None:
    assert Ticket.parse(str(ticket)) == ticket


@given(
    partition=st.integers(min_value=0, max_value=4095),
    seq=st.integers(min_value=1, max_value=2**63 - 1),
)
def test_tickets_of_generated_producer_ids_round_trip(partition: int, seq: int) -> None:
    # Producer ids default to secrets.token_hex(8).
    ticket = Ticket(partition, secrets.token_hex(8), seq)
    assert Ticket.parse(str(ticket)) == ticket


def test_tickets_of_a_producer_id_with_dots_round_trip() -> None:
    # Producer(producer_id=...) and the batch envelope accept any id of 1-64
    # chars, dots included, so its tickets must parse back.
    ticket = Ticket(2, "orders.api.v1", 9)
    assert Ticket.parse(str(ticket)) == ticket


def test_parse_ignores_surrounding_whitespace() -> None:
    assert Ticket.parse("  3.abc.42\n") == Ticket(3, "abc", 42)


@pytest.mark.parametrize(
    "text",
    ["", "3", "3.abc", "3.abc.", ".abc.1", "x.abc.1", "3.abc.x", "3..1", "-1.abc.1",
     "3.abc.0", "3.abc.-2", "3.abc.1.extra", "3 abc 1", "3,abc,1"],
)
def test_text_that_is_not_a_ticket_is_refused(text: str) -> None:
    with pytest.raises(InvalidWrite, match="not a ticket"):
        Ticket.parse(text)


def test_tickets_are_plain_tuples() -> None:
    ticket = Ticket(1, "p", 2)
    assert ticket == (1, "p", 2)
    partition, producer_id, seq = ticket
    assert (partition, producer_id, seq) == (1, "p", 2)


# -- futures ---------------------------------------------------------------

def test_a_future_gives_its_ticket_once_the_batch_is_confirmed() -> None:
    batch = Batch(partition=2, first_seq=10)
    futures = [WriteFuture(batch, Ticket(2, "p", 10 + i)) for i in range(3)]
    assert not any(f.done() for f in futures)
    batch.settle()
    assert [f.result(timeout=0) for f in futures] == [Ticket(2, "p", s) for s in (10, 11, 12)]
    assert all(f.done() for f in futures)
    assert futures[0].exception(timeout=0) is None


def test_a_failed_batch_fails_every_future_with_its_error() -> None:
    batch = Batch(0, 1)
    futures = [WriteFuture(batch, Ticket(0, "p", 1 + i)) for i in range(2)]
    error = PublishFailed("nacked")
    batch.settle(error)
    for future in futures:
        with pytest.raises(PublishFailed, match="nacked"):
            future.result(timeout=0)
        assert future.exception(timeout=0) is error


def test_the_first_settlement_wins() -> None:
    batch = Batch(0, 1)
    future = WriteFuture(batch, Ticket(0, "p", 1))
    batch.settle()
    batch.settle(PublishFailed("late"))
    assert future.result(timeout=0) == Ticket(0, "p", 1)


def test_an_unconfirmed_write_times_out() -> None:
    future = WriteFuture(Batch(0, 1), Ticket(0, "p", 1))
    with pytest.raises(Timeout):
        future.result(timeout=0.01)
    assert isinstance(future.exception(timeout=0.01), Timeout)
    assert not future.done()


def test_a_waiting_future_wakes_when_another_thread_settles() -> None:
    batch = Batch(0, 1)
    future = WriteFuture(batch, Ticket(0, "p", 1))
    timer = threading.Timer(0.05, batch.settle)
    timer.start()
    try:
        assert future.result(timeout=5) == Ticket(0, "p", 1)
    finally:
        timer.join()


def test_settling_drops_the_batch_body() -> None:
    batch = Batch(0, 1)
    batch.writes.append(b"write")
    batch.body = b"body"
    batch.settle()
    assert batch.writes == [] and batch.body == b""
