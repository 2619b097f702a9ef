"""App: the registry of an application's reducers, job handlers and job hooks.

There is no global default App; create one and pass it (``liftline worker
--app module:attr`` imports it).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liftline.codec import BUILTIN_OPS
from liftline.errors import ConfigError, InvalidWrite

Reducer = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class JobSpec:
    """A registered job: its handler and retry policy."""

    name: str
    fn: Callable[..., Any]
    retries: int = 3
    backoff: tuple[float, float] = (1.0, 60.0)  # first delay, cap (seconds)
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"job {self.name!r}: retries must be >= 0")
        low, high = self.backoff
        if not 0 <= low <= high:
            raise ConfigError(
                f"job {self.name!r}: backoff must be (first, cap) with 0 <= first <= cap"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"job {self.name!r}: timeout must be > 0")

    def delay(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (``attempt`` ≥ 1 failed): exponential,
        capped, with full jitter in [ceiling/2, ceiling]."""
        low, high = self.backoff
        ceiling = min(high, low * 2 ** min(attempt - 1, 60))
        return random.uniform(ceiling / 2, ceiling)

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    def check_args(self, kwargs: dict[str, Any]) -> None:
        """InvalidWrite if the handler cannot be called with these keyword arguments."""
        try:
            self.signature.bind(None, **kwargs)
        except TypeError as exc:
            raise InvalidWrite(f"job {self.name!r}: arguments do not match: {exc}") from exc


class App:
    """Reducers (custom write ops), jobs and job hooks of one application."""

    def __init__(self, name: str = "liftline") -> None:
        self.name = name
        self.reducers: dict[str, Reducer] = {}
        self.jobs: dict[str, JobSpec] = {}
        # Kept as plain objects: the core does not import the jobs layer that calls them.
        self.job_hooks: list[Any] = []

    def reducer(self, op: str) -> Callable[[Reducer], Reducer]:
        """Register ``fn(current, value) -> new`` as the write op ``op``.

        ``current`` is None when the key is absent. The function must be
        deterministic: every replica applies it to the same stream. Raising
        InvalidWrite (or anything else) turns that write into a dead letter.
        """
        if op in BUILTIN_OPS:
            raise ConfigError(f"op {op!r} is built in and cannot be redefined")
        if not op or len(op) > 64:
            raise ConfigError("op names are 1-64 characters")

        def register(fn: Reducer) -> Reducer:
            self.reducers[op] = fn
            return fn

        return register


    def job(self, name: str, *, retries: int = 3, backoff: tuple[float, float] = (1.0, 60.0),
            timeout: float | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``fn(ctx, **kwargs) -> result`` as the background job ``name``.

        A failure (an exception, or no return within ``timeout`` seconds) is
        retried up to ``retries`` times after exponential backoff with jitter
        (``backoff`` = first delay, cap); then the job is dead. The result must
        be msgpack-encodable; it is kept in Redis for ``job_result_ttl_s``.
        """
        if not name or len(name) > 64:
            raise ConfigError("job names are 1-64 characters")

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.jobs[name] = JobSpec(name, fn, retries, tuple(backoff), timeout)  # type: ignore[arg-type]
            return fn

        return register

    def add_job_hook(self, hook: Any) -> Any:
        """Have the job runner call ``hook``, an instance of a subclass of
        ``liftline.jobs.hooks.JobHook``, around every job; hooks are called in the
        order they were added. Returns ``hook``."""
        if isinstance(hook, type):
            raise ConfigError(f"add_job_hook({hook.__name__}): pass an instance, not the class")
        self.job_hooks.append(hook)
        return hook


def load_app(spec: str) -> App:
    """The App at ``module:attribute`` (ConfigError if there is none)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ConfigError(f"--app {spec!r}: expected module:attribute")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way while importing
        raise ConfigError(f"--app {spec!r}: cannot import {module_name!r}: {exc!r}") from exc
    obj = getattr(module, attr or "app", None)
    if not isinstance(obj, App):
        raise ConfigError(f"--app {spec!r}: {attr or 'app'!r} is not a liftline.App")
    return obj
