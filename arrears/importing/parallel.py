"""Parsing a file's records in worker processes while the importer stores the chunk before.

Splitting a line into its record and checking the record on its own (`read_account`,
`read_payment`) are pure and cost more than storing it; the rules across rows (a repeated id, a
borrower's one name and phone) are cheap but need the file's order. So chunks of lines read in
this process go to a small pool of spawned processes, which split and parse them and send the
results back; `parsed_records` yields them in file order, a fixed number of chunks ahead of the
caller, which checks the rules across rows and stores meanwhile. A line crosses as its text, and
a record the worker accepted comes back without its cells: the importer keeps the `Line`, to be
split again here only should a rule across rows reject it. A record the worker refused comes back
whole, with its verdict.

A small file is parsed here: a worker's start (a new interpreter importing the checks) costs
about as much as parsing 20,000 records. Reading stays in this process, so a file that cannot be
read raises `UnreadableFile` where it always did: after every record before the bad line was
yielded. Workers ignore SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): the
importer hears them, stops between chunks and stores nothing, and the pool is shut down when the
`with` block ends, however it ends; a worker whose importer is killed leaves on its own.
"""

import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from typing import TypeVar

from arrears.importing.reading import Layout
from arrears.importing.records import Line, RawRow, Rejection
from arrears.processes import collect_rarely, leave_with_parent

__all__ = ["PARSE_WORKERS", "POOL_FROM_RECORDS", "parsed_records"]

R = TypeVar("R")
Read = Callable[[RawRow], R | list[Rejection] | None]

# Worker processes parsing while this one checks and stores (measured on 2 cores: see
# benchmarks/README.md). 0 parses everything here.
PARSE_WORKERS = 1
# Below this many records a file is parsed here: starting a worker would cost more than it saves.
POOL_FROM_RECORDS = 20_000


@contextmanager
def parsed_records(
    lines: Iterable[Line],
    layout: Layout,
    read: Read[R],
    *,
    chunk_size: int,
    workers: int = PARSE_WORKERS,
) -> Iterator[Iterator[tuple[RawRow | Line, R | list[Rejection] | None]]]:
    """Each line split by `layout` into its record, with `read(record)`, in file order, parsed
    in `workers` processes once the file proves longer than `POOL_FROM_RECORDS`. `read` must be
    importable by name. The record comes as its `Line` where a worker accepted it (`read` gave
    neither rejections nor None), else as its `RawRow`.

    At most `workers + 1` chunks of `chunk_size` lines are read ahead of the one being yielded.
    The pool lives as long as the block: leaving it (done, an error, a stop) cancels what is
    queued, waits for the chunks being parsed and joins the workers.
    """
    pool: ProcessPoolExecutor | None = None

    def start() -> ProcessPoolExecutor:
        nonlocal pool
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),  # not forked: the importer may run threads (a flow)
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        return pool

    try:
        yield _parsed(iter(lines), layout, read, chunk_size, workers, start)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class _Refused:
    """A record a worker did not accept, sent back whole: the importer checks and rejects it."""

    raw: RawRow
    verdict: list[Rejection] | None


def _parsed(
    lines: Iterator[Line],
    layout: Layout,
    read: Read[R],
    chunk_size: int,
    workers: int,
    start: Callable[[], ProcessPoolExecutor],
) -> Iterator[tuple[RawRow | Line, R | list[Rejection] | None]]:
    head: list[list[Line]] = []  # whole chunks, read until the file proves long enough
    failure: Exception | None = None
    exhausted = False
    while workers > 0 and not exhausted and sum(map(len, head)) <= POOL_FROM_RECORDS:
        chunk, failure = _take(lines, chunk_size)
        head.append(chunk)
        exhausted = failure is not None or len(chunk) < chunk_size
    if workers <= 0 or exhausted:
        for chunk in head:
            for line in chunk:
                raw = layout.row(line)
                yield raw, read(raw)
        if failure is not None:
            raise failure
        for line in lines:
            raw = layout.row(line)
            yield raw, read(raw)
        return
    pool = start()
    pending: deque[tuple[list[Line], Future[list[R | _Refused]]]] = deque()

    def submit(chunk: list[Line]) -> None:
        # A line crosses as its number and text: pickling a record of each costs more.
        sent = [(line.line, line.text) for line in chunk]
        pending.append((chunk, pool.submit(_read_chunk, read, sent, layout)))

    for chunk in head:
        submit(chunk)
    del head
    while pending:
        while not exhausted and len(pending) <= workers:
            more, failure = _take(lines, chunk_size)
            if more:
                submit(more)
            exhausted = failure is not None or len(more) < chunk_size
        chunk, future = pending.popleft()
        for line, result in zip(chunk, future.result(), strict=True):
            if isinstance(result, _Refused):
                yield result.raw, result.verdict
            else:
                yield line, result
    if failure is not None:
        raise failure


def _take(lines: Iterator[Line], count: int) -> tuple[list[Line], Exception | None]:
    """The next `count` lines and, if reading failed first, the error: it is raised once the
    records read before it have been yielded, where reading them in order would have raised it."""
    taken: list[Line] = []
    try:
        for line in islice(lines, count):
            taken.append(line)
    except Exception as error:  # UnreadableFile, or whatever else reading met
        return taken, error
    return taken, None


def _start_worker(parent: int) -> None:
    """The importer decides what a signal means (stop between chunks, store nothing); a worker
    killed by a Ctrl-C meant for its importer would break the pool instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    collect_rarely()
    leave_with_parent(parent)


def _read_chunk(read: Read[R], lines: list[tuple[int, str]], layout: Layout) -> list[R | _Refused]:
    """In a worker: each line split and `read`; what `read` refused goes back with its record."""
    found: list[R | _Refused] = []
    for number, text in lines:
        raw = layout.row(Line(number, text))
        result = read(raw)
        found.append(_Refused(raw, result) if result is None or isinstance(result, list) else result)
    return found
