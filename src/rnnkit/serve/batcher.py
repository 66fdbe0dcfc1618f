"""Dynamic batching: requests from many clients, one model, one worker thread.

A request (its texts and decode options) goes into a bounded queue with a future; the
worker thread takes the first waiting request, then keeps gathering more for up to
``max_wait`` seconds while they fit in ``max_batch`` sentences (a request that would
not fit starts the next batch; one bigger than ``max_batch`` goes alone), and hands them to the
model in one call per set of decode options. Each request's answers are cut back out of
the batch's in order and set on its future, so the event loop only ever awaits futures
and never runs the model. A model error fails the requests of that batch and the worker
goes on with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "Job", "QueueFull"]

# (texts, options) of one group of requests → one result per text, in order
Run = Callable[[list[str], "Options"], list[Any]]
Options = tuple[Any, ...]  # hashable decode options: requests batch only with equal ones


class QueueFull(Exception):
    """More requests are waiting than ``max_queue``."""


@dataclass
class Job:
    """One request: its texts, its options and where its answer goes."""

    texts: list[str]
    options: Options
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)


def _settle(job: Job, result: Any = None, error: BaseException | None = None) -> None:
    def done() -> None:
        if job.future.done():  # the client went away (cancelled): nobody to tell
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the event loop is closed: nobody to tell, and the worker goes on
        pass


class Batcher:
    """Gather requests into batches for ``run``, in one worker thread.

    Args:
        run: translates a list of texts with one set of options; one result per text.
        max_batch: most sentences gathered into one batch (a bigger request goes alone).
        max_wait: seconds the worker waits for more requests after the first.
        max_queue: most requests waiting; beyond it :meth:`submit` raises QueueFull.
        on_batch: called with the number of sentences of each model call (metrics).
    """

    def __init__(
        self,
        run: Run,
        max_batch: int = 32,
        max_wait: float = 0.005,
        max_queue: int = 256,
        on_batch: Callable[[int], None] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.max_queue, self.on_batch, self.on_start = max_queue, on_batch, on_start
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0  # requests submitted and not yet taken by the worker
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="rnnkit-batcher", daemon=True)
        self._closed = False

    @property
    def alive(self) -> bool:
        """The worker thread is running (False before start and after close)."""
        return self._thread.is_alive()

    @property
    def depth(self) -> int:
        """Requests waiting in the queue."""
        return self._waiting

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Stop taking requests, finish those queued, stop the worker."""
        with self._lock:  # every request submit() took is queued before the stop mark
            self._closed = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, texts: Sequence[str], options: Options) -> asyncio.Future:
        """Queue a request; its future gets the list of results, one per text, in order.

        Raises:
            QueueFull: ``max_queue`` requests are already waiting, or the batcher is closed.
        """
        loop = asyncio.get_running_loop()
        job = Job(list(texts), options, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if self._waiting >= self.max_queue:
                raise QueueFull(f"{self._waiting} requests are waiting (--max-queue)")
            self._waiting += 1
            self._queue.put(job)  # (under the lock: close() cannot slip in between)
        return job.future

    def _take(self, block: bool = True, timeout: float | None = None) -> Job | None:
        job = self._queue.get(block, timeout)
        if job is not None:
            with self._lock:
                self._waiting -= 1
        return job

    def _work(self) -> None:
        if self.on_start is not None:
            self.on_start()
        held: Job | None = None  # taken, but it would have made the batch too big
        stopping = False
        while not stopping:
            first = held if held is not None else self._take()
            held = None
            if first is None:
                break
            jobs, n = [first], len(first.texts)  # (a request over max_batch goes alone)
            deadline = time.monotonic() + self.max_wait
            while n < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    job = self._take(timeout=left) if left > 0 else self._take(block=False)
                except queue.Empty:
                    break
                if job is None:  # close(): finish this batch and what is queued, then stop
                    stopping = True
                    break
                if n + len(job.texts) > self.max_batch:  # the next batch starts with it
                    held = job
                    break
                jobs.append(job)
                n += len(job.texts)
            self._process(jobs)
        if held is not None:
            self._process([held])
        while True:  # drain: requests queued before close() are still answered
            try:
                job = self._take(block=False)
            except queue.Empty:
                break
            if job is not None:
                self._process([job])

    def _process(self, jobs: list[Job]) -> None:
        groups: dict[Options, list[Job]] = {}
        for job in jobs:
            if job.future.done():  # given up on (timed out, client gone): no model time
                continue
            groups.setdefault(job.options, []).append(job)
        for options, group in groups.items():
            texts = [t for job in group for t in job.texts]
            try:
                results = self.run(texts, options) if texts else []
                if len(results) != len(texts):
                    raise RuntimeError(f"{len(results)} results for {len(texts)} texts")
            except Exception as e:  # the model failed: this batch's requests fail, not the server
                for job in group:
                    _settle(job, error=e)
                continue
            start = 0
            for job in group:
                _settle(job, results[start : start + len(job.texts)])
                start += len(job.texts)
            if self.on_batch is not None and texts:
                with contextlib.suppress(Exception):  # a metric is not worth the worker
                    self.on_batch(len(texts))
