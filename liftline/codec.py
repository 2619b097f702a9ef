"""msgpack envelopes for everything that crosses a process boundary.

One wire format, never pickle. Every decode is bounded (sizes, nesting) and
every envelope is checked, so garbage raises :class:`InvalidMessage` instead of
reaching a store.

A *write* is ``[op, key, value]`` or ``[op, key, value, arg]``. A *batch* is
``[1, "w", producer_id, first_seq, [write, …]]``; write ``i`` carries sequence
number ``first_seq + i`` for that producer and partition.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import msgpack

from liftline.errors import InvalidMessage, InvalidWrite

FORMAT_VERSION = 1
MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 64 * 1024
MAX_BATCH_BYTES = 1024 * 1024
MAX_DEPTH = 32

BUILTIN_OPS = frozenset({"set", "delete", "incr", "merge", "append", "setnx", "cas"})
_SCALARS = (str, int, float, bool, bytes, type(None))
# Tuples, not ``int | float``: that expression builds a union object on every call,
# and isinstance checks a tuple faster (this is on every write's path).
_NUMBERS = (int, float)
_SEQUENCES = (list, tuple)
_packers = threading.local()


def _reject_ext(code: int, data: bytes) -> Any:
    raise InvalidMessage(f"msgpack extension type {code} is not allowed")


def unpack(data: bytes, *, max_bytes: int = MAX_BATCH_BYTES) -> Any:
    """Decode msgpack with limits; anything malformed raises InvalidMessage."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise InvalidMessage(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            ext_hook=_reject_ext,
            use_list=True,
        )
    except InvalidMessage:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise InvalidMessage(f"not valid msgpack: {exc}") from exc


def pack(obj: Any) -> bytes:
    """Encode with msgpack; types msgpack cannot carry raise InvalidWrite."""
    try:
        return _packer().pack(obj)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidWrite(f"value cannot be encoded: {exc}") from exc


def _packer() -> msgpack.Packer:
    """This thread's Packer: a third of ``packb``'s cost, which builds one per call.

    A Packer is not thread-safe, hence one per thread; its buffer is reset after
    every ``pack``, also one that raised, so one bad value leaves it usable.
    """
    try:
        return _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
        return packer


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a value (a scalar is 0); stops counting past ``limit``.

    Raises InvalidWrite for anything but None, bool, int, float, str, bytes,
    lists and string-keyed maps (msgpack's timestamp extension included).
    """
    if isinstance(value, _SCALARS):
        return 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, _SEQUENCES):
            children = item
        else:
            raise InvalidWrite(f"values of type {type(item).__name__} are not allowed")
        for child in children:
            if not isinstance(child, _SCALARS):
                stack.append((child, level + 1))
    return deepest


def check_key(key: Any) -> str:
    """The key, or InvalidWrite when it is not a non-empty str of at most 512 UTF-8 bytes."""
    if not isinstance(key, str):
        raise InvalidWrite(f"key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidWrite("key must not be empty")
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidWrite(f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8")
    return key


def check_write(op: Any, key: Any, value: Any, arg: Any = None) -> None:
    """Raise InvalidWrite unless (op, key, value, arg) is a well-formed write.

    Checks what can be known without the current value: the key, the value's
    nesting depth, and each built-in op's argument types. App-defined ops are
    checked by their reducer on the worker.
    """
    if not isinstance(op, str) or not op or len(op) > 64:
        raise InvalidWrite(f"op must be a non-empty string of at most 64 chars, got {op!r}")
    check_key(key)
    if not isinstance(value, _SCALARS) and depth(value) > MAX_DEPTH:
        raise InvalidWrite(f"value is nested deeper than {MAX_DEPTH} levels")
    if op == "incr":
        if isinstance(value, bool) or not isinstance(value, _NUMBERS):
            raise InvalidWrite(f"incr needs an int or float amount, got {type(value).__name__}")
    elif op == "merge":
        if not isinstance(value, dict):
            raise InvalidWrite(f"merge needs a dict value, got {type(value).__name__}")
    elif op == "cas":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
            raise InvalidWrite("cas needs the expected version as an int >= 0")
    elif op == "append":
        if arg is not None and (isinstance(arg, bool) or not isinstance(arg, int) or arg < 1):
            raise InvalidWrite("append's cap must be an int >= 1")


def pack_write(op: str, key: str, value: Any, arg: Any = None) -> bytes:
    """Validate and encode one write; its encoded value must fit 64 KiB."""
    check_write(op, key, value, arg)
    packed = pack([op, key, value] if arg is None else [op, key, value, arg])
    # The envelope around the value is at most the key, the op and a few bytes.
    if len(packed) > MAX_VALUE_BYTES:
        value_size = len(pack(value))
        if value_size > MAX_VALUE_BYTES:
            raise InvalidWrite(
                f"value is {value_size} bytes packed; the limit is {MAX_VALUE_BYTES}"
            )
    return packed


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def pack_batch(producer_id: str, first_seq: int, packed_writes: list[bytes]) -> bytes:
    """A batch envelope around writes already encoded by :func:`pack_write`."""
    head = b"\x95" + pack(FORMAT_VERSION) + pack("w") + pack(producer_id) + pack(first_seq)
    return b"".join([head, _array_header(len(packed_writes)), *packed_writes])


def unpack_batch(data: bytes) -> tuple[str, int, list[Any]]:
    """(producer_id, first_seq, writes) of a batch; InvalidMessage if it is not one."""
    obj = unpack(data)
    if not (isinstance(obj, list) and len(obj) == 5 and obj[0] == FORMAT_VERSION and obj[1] == "w"):
        raise InvalidMessage(
            "not a liftline write batch (expected [1, 'w', producer, seq, writes])"
        )
    _, _, producer_id, first_seq, writes = obj
    if not isinstance(producer_id, str) or not producer_id or len(producer_id) > 64:
        raise InvalidMessage("batch producer id must be a non-empty string")
    if isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 1:
        raise InvalidMessage("batch first_seq must be an int >= 1")
    if not isinstance(writes, list):
        raise InvalidMessage("batch writes must be a list")
    return producer_id, first_seq, writes


def write_fields(write: Any) -> tuple[str, str, Any, Any]:
    """(op, key, value, arg) of one decoded write, checked; InvalidWrite otherwise."""
    if not isinstance(write, list) or not 3 <= len(write) <= 4:
        raise InvalidWrite("a write must be [op, key, value] or [op, key, value, arg]")
    op, key, value = write[0], write[1], write[2]
    arg = write[3] if len(write) == 4 else None
    check_write(op, key, value, arg)
    return op, key, value, arg
