"""Reads served by a partition's owner over RabbitMQ RPC (direct reply-to).

Request: ``{"k": key, "after": [partition, producer_id, seq] | None, "t": timeout_ms}``.
Reply: ``{"ok": bool, "found": bool, "v": value, "ver": version, "p": partition,
"off": applied offset, "err": message, "code": str}``. A read ``after`` a
ticket waits, up to its timeout, until that write is applied.

Ticket status: ``{"st": [partition, producer_id, seq], "t": timeout_ms}`` →
``{"ok": true, "applied": bool, "p", "seq": the producer's watermark here,
"off": applied offset}``; with ``t`` it waits until applied or the timeout.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from liftline import codec
from liftline.errors import InvalidMessage
from liftline.partitioning import partition_for

if TYPE_CHECKING:
    from liftline.workers.partition_worker import Worker

log = logging.getLogger(__name__)
MAX_WAIT_MS = 60_000
MAX_KEYS_PER_READ = 10_000
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class ReadServer:
    """Answers get requests from the worker's in-memory stores."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._channel: Any = None
        self._parked: list[tuple[float, str, str, dict[str, Any]]] = []

    def attach(self, channel: Any, queue: str) -> None:
        self._channel = channel
        channel.queue_declare(queue, exclusive=True, auto_delete=True)
        channel.basic_consume(queue, self._on_request, auto_ack=True)

    def detach(self) -> None:
        self._channel = None
        self._parked.clear()

    def _on_request(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        if not props.reply_to:
            return
        try:
            request = codec.unpack(body, max_bytes=MAX_REQUEST_BYTES)
            if not isinstance(request, dict):
                raise InvalidMessage("request must be a map")
            if "st" in request:
                _status_target(request["st"])
            elif "ks" in request:
                keys = request["ks"]
                if not isinstance(keys, list) or len(keys) > MAX_KEYS_PER_READ:
                    raise InvalidMessage(f"ks must be a list of at most {MAX_KEYS_PER_READ} keys")
                for key in keys:
                    codec.check_key(key)
            else:
                codec.check_key(request.get("k"))
        except Exception as exc:  # any bad request gets an error reply, never a crash
            self._reply(props.reply_to, props.correlation_id,
                        {"ok": False, "code": "bad_request", "err": str(exc)})
            return
        if "ks" in request:
            self._reply(props.reply_to, props.correlation_id, self._many(request["ks"]))
            return
        timeout_ms = min(int(request.get("t") or 0), MAX_WAIT_MS)
        deadline = time.monotonic() + timeout_ms / 1000.0
        if "st" in request:
            # A status asked without a wait is answered at once, applied or not.
            if not self._status(props.reply_to, props.correlation_id, request,
                                final=timeout_ms <= 0):
                self._parked.append((deadline, props.reply_to, props.correlation_id, request))
            return
        if not self._answer(props.reply_to, props.correlation_id, request, final=False):
            self._parked.append((deadline, props.reply_to, props.correlation_id, request))

    def serve_parked(self, now: float) -> None:
        if not self._parked:
            return
        still = []
        for deadline, reply_to, corr, request in self._parked:
            answer = self._status if "st" in request else self._answer
            if not answer(reply_to, corr, request, final=now >= deadline):
                still.append((deadline, reply_to, corr, request))
        self._parked = still

    def _answer(self, reply_to: str, corr: str, request: dict[str, Any], final: bool) -> bool:
        """Reply if possible now; False means 'park it' (the awaited write is not applied yet)."""
        key = request["k"]
        partition = partition_for(key, self.worker.settings.partitions)
        owned = self.worker.owned.get(partition)
        if owned is None:
            self._reply(reply_to, corr, {"ok": False, "code": "not_owner", "p": partition,
                                         "err": f"partition {partition} is not held here"})
            return True
        after = request.get("after")
        if after:
            try:
                a_part, a_producer, a_seq = int(after[0]), str(after[1]), int(after[2])
            except (TypeError, ValueError, IndexError):
                self._reply(reply_to, corr, {"ok": False, "code": "bad_request",
                                             "err": "after must be [partition, producer, seq]"})
                return True
            a_owned = self.worker.owned.get(a_part)
            if a_owned is None:
                self._reply(reply_to, corr, {"ok": False, "code": "not_owner", "p": a_part,
                                             "err": f"partition {a_part} is not held here"})
                return True
            if not a_owned.store.applied(a_producer, a_seq):
                if not final:
                    return False
                self._reply(reply_to, corr, {
                    "ok": False, "code": "timeout", "p": a_part,
                    "off": a_owned.store.applied_offset,
                    "seq": a_owned.store.watermarks.get(a_producer, 0),
                    "err": "the write was not applied within the timeout",
                })
                return True
        entry = owned.store.get(key)
        self._reply(reply_to, corr, {
            "ok": True, "found": entry is not None, "p": partition,
            "v": None if entry is None else entry[0], "ver": 0 if entry is None else entry[1],
            "off": owned.store.applied_offset,
        })
        return True

    def _status(self, reply_to: str, corr: str, request: dict[str, Any], final: bool) -> bool:
        """Whether a ticket's write is applied here; False means 'park it' (not yet)."""
        partition, producer, seq = _status_target(request["st"])
        owned = self.worker.owned.get(partition)
        if owned is None:
            self._reply(reply_to, corr, {"ok": False, "code": "not_owner", "p": partition,
                                         "err": f"partition {partition} is not held here"})
            return True
        applied = owned.store.applied(producer, seq)
        if not applied and not final:
            return False
        self._reply(reply_to, corr, {
            "ok": True, "applied": applied, "p": partition,
            "seq": owned.store.watermarks.get(producer, 0), "off": owned.store.applied_offset,
        })
        return True

    def _many(self, keys: list[str]) -> dict[str, Any]:
        """Values of many keys: ``{"ok", "vals": [[found, value, version] | None …]}``.

        ``None`` marks a key whose partition is not held here.
        """
        partitions = self.worker.settings.partitions
        owned = self.worker.owned
        vals: list[Any] = []
        for key in keys:
            held = owned.get(partition_for(key, partitions))
            if held is None:
                vals.append(None)
                continue
            entry = held.store.get(key)
            vals.append([False, None, 0] if entry is None else [True, entry[0], entry[1]])
        return {"ok": True, "vals": vals}

    def _reply(self, reply_to: str, corr: str, payload: dict[str, Any]) -> None:
        if self._channel is None:
            return
        try:
            self._channel.basic_publish(
                "", reply_to, codec.pack(payload),
                properties=pika.BasicProperties(correlation_id=corr),
            )
        except (pika.exceptions.AMQPError, OSError) as exc:
            log.warning("read reply failed: %r", exc)


def _status_target(raw: Any) -> tuple[int, str, int]:
    """(partition, producer_id, seq) of a status request; InvalidMessage otherwise."""
    if not isinstance(raw, list) or len(raw) != 3:
        raise InvalidMessage("st must be [partition, producer, seq]")
    partition, producer, seq = raw
    if (isinstance(partition, bool) or not isinstance(partition, int) or partition < 0
            or not isinstance(producer, str) or not producer
            or isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise InvalidMessage("st must be [partition >= 0, producer id, seq >= 1]")
    return partition, producer, seq
