"""Decode and encode beside the processing: a reader thread that keeps a few chunks ahead of its
consumer (:func:`background`), and a writer thread that takes chunks as they are made
(:class:`BackgroundSink`). Each holds at most ``depth`` chunks, so memory stays bounded; an error in
the thread is raised again in the caller at its next step."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

_POLL = 0.1
"""Seconds between checks of the stop flag while a thread waits on a full or empty queue."""


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; True when it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def background(items: Iterable, depth: int = 2, name: str = "lipsync-reader") -> Iterator:
    """Iterate ``items`` in a thread, at most ``depth`` items ahead of the caller. Errors raised by
    ``items`` are raised here; leaving the loop early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if not _put(q, ("item", item), stop):
                    return
            _put(q, ("end", None), stop)
        except BaseException as e:  # handed to the caller, who raises it
            _put(q, ("error", e), stop)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


class BackgroundSink:
    """Hands items to ``consume`` in a thread, at most ``depth`` waiting. ``put`` and ``close`` raise
    the thread's error, if it had one; ``close`` waits until every item was consumed."""

    def __init__(self, consume: Callable[[object], None], depth: int = 2, name: str = "lipsync-writer"):
        self._q: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._consume = consume
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                kind, item = self._q.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if kind == "end" or self._stop.is_set():  # aborted: what waits is not consumed
                return
            try:
                self._consume(item)
            except BaseException as e:  # raised again in the caller
                self._error = e
                self._stop.set()
                return

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item) -> None:
        self._raise()
        while not _put(self._q, ("item", item), self._stop):
            self._raise()
            return

    def close(self) -> None:
        """Wait for every item to be consumed; raise the thread's error if it had one."""
        if self._thread.is_alive() and not self._stop.is_set():
            _put(self._q, ("end", None), self._stop)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop without consuming what waits (after an error in the caller). Returns once the thread has
        ended (after the item it is consuming, if any), so the caller may close what it writes to."""
        self._stop.set()
        self._thread.join()
