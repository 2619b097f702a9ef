"""One exception tree for liftline.

Everything liftline raises on purpose derives from :class:`LiftlineError`.
Errors worth retrying (a broker or Redis that went away) derive from
:class:`ConnectionLost`; driver exceptions are wrapped with ``raise … from exc``
so callers never need to import pika or redis to catch them.
"""

from __future__ import annotations


class LiftlineError(Exception):
    """Root of every error liftline raises on purpose."""

    exit_code = 1


class ConfigError(LiftlineError):
    """A setting is missing, malformed, or contradicts the cluster."""

    exit_code = 2


class InvalidWrite(LiftlineError):
    """A write (key, op, value) is malformed or breaks a limit; nothing was sent."""

    exit_code = 3


class InvalidMessage(LiftlineError):
    """Bytes that crossed a process boundary do not decode to a valid envelope."""

    exit_code = 3


class ConnectionLost(LiftlineError):
    """A server could not be reached or dropped the connection (retryable)."""

    exit_code = 4


class BrokerError(LiftlineError):
    """RabbitMQ refused or failed an operation."""

    exit_code = 4


class BrokerUnavailable(BrokerError, ConnectionLost):
    """RabbitMQ cannot be reached, or stayed unreachable past the retry budget."""


class PublishFailed(BrokerError):
    """A publish was nacked, returned unroutable, or never confirmed.

    The writes it carried are not acknowledged; the caller may retry them.
    """


class StoreError(LiftlineError):
    """Redis refused or failed an operation."""

    exit_code = 5


class StoreUnavailable(StoreError, ConnectionLost):
    """Redis cannot be reached."""


class Fenced(StoreError):
    """A flush carried an epoch older than the partition's current one.

    The worker lost ownership of the partition and must drop it.
    """


class NotFound(LiftlineError):
    """The asked-for key, job or record does not exist."""

    exit_code = 6


class Timeout(LiftlineError):
    """An operation did not finish within its deadline."""

    exit_code = 7


class NoOwner(LiftlineError):
    """No live worker owns the partition; the read cannot be served by an owner."""

    exit_code = 8


class ServerError(LiftlineError):
    """A local RabbitMQ or Redis server could not be started or stopped."""

    exit_code = 9


class AlreadyRunning(LiftlineError):
    """Another `liftline up` holds this data directory."""

    exit_code = 10


class PartialAnswer(LiftlineError):
    """A command printed what it could, but a server it asks did not answer."""

    exit_code = 12


class ScaleError(LiftlineError):
    """An autoscaler backend could not set the worker count (a failed command)."""

    exit_code = 11
