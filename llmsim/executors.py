"""Where many runs execute: in this process, on a local process pool, or on a Ray cluster.

An executor maps a module-level function over a list of inputs and yields ``(index, result)``
pairs as the calls finish, in whatever order they finish: callers that need an order restore
it from the index. The function must be importable by name (a process pool and Ray send it by
reference) and should catch its own errors: one that escapes ends the whole map.

The results do not depend on the executor: each call is a pure function of its input (a
scenario carries its own seed), so every executor gives the same values.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Literal, Protocol, TypeVar

from llmsim.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

ExecutorKind = Literal["local", "process", "ray"]


class Executor(Protocol):
    """Runs ``fn`` over ``items``; ``workers`` is how many calls run at once."""

    workers: int

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """``(index, fn(items[index]))`` for every item, as the calls finish."""
        ...

    def close(self) -> None:
        """Release what the executor holds (processes, a cluster connection)."""
        ...


class LocalExecutor:
    """One call after another in this process (``-j 1``): simplest to debug."""

    workers = 1

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            yield i, fn(item)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A pool of ``workers`` local processes (``concurrent.futures``). At most ``2 * workers``
    calls are queued at a time, so stopping early (Ctrl-C) leaves little work in flight."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            pending: dict[Future[R], int] = {}
            queue = iter(enumerate(items))
            try:
                while True:
                    for i, item in queue:
                        pending[pool.submit(fn, item)] = i
                        if len(pending) >= 2 * self.workers:
                            break
                    if not pending:
                        return
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in sorted(done, key=pending.__getitem__):
                        yield pending.pop(fut), fut.result()
            finally:
                for fut in pending:
                    fut.cancel()

    def close(self) -> None:
        pass  # each map owns its pool


class RayExecutor:
    """Tasks on a Ray cluster: a local one started here (``address`` None, ``workers`` CPUs)
    or an existing one (``address``, e.g. ``ray://head:10001`` or ``auto``), whose workers
    must have llmsim (and any custom policy module) installed. A local instance gets this
    process's import path, so its workers import the same code."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "the ray executor needs Ray: pip install 'llmsim[ray]'", field="--executor"
            ) from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                path = os.pathsep.join(p for p in sys.path if p)
                kwargs["num_cpus"] = workers
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(
                    f"cannot reach a Ray cluster at '{address}' ({exc})", field="--address"
                ) from None
        cpus = ray.cluster_resources().get("CPU", workers)  # type: ignore[no-untyped-call]
        self.workers = max(1, int(cpus))

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        ray = self._ray
        task = ray.remote(num_cpus=1)(fn)
        refs = {task.remote(item): i for i, item in enumerate(items)}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    yield refs.pop(ref), ray.get(ref)
        finally:
            for ref in refs:
                ray.cancel(ref)

    def close(self) -> None:
        """Disconnect from Ray if this executor connected (stopping a local instance it
        started); a no-op when Ray was already initialised by the caller."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(
    kind: ExecutorKind, workers: int | None = None, address: str | None = None
) -> Executor:
    """The executor for ``--executor kind`` with ``-j workers`` (None: the CPUs this process
    may use); ``process`` with one worker runs in this process."""
    if workers is None:
        workers = default_workers()
    if workers < 1:
        raise ConfigError(f"-j must be at least 1 (got {workers})", field="-j")
    if address is not None and kind != "ray":
        raise ConfigError(
            f"--address is for --executor ray (got --executor {kind})", field="--address"
        )
    if kind == "ray":
        return RayExecutor(workers, address)
    if kind == "local" or workers == 1:
        return LocalExecutor()
    return ProcessExecutor(workers)


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
