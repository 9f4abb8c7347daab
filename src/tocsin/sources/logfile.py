"""Tail log files by path or glob, through rotation and restarts, without skipping a line.

Only complete lines are handed over: a trailing partial line waits in a buffer until its
newline arrives, and is dropped if its file is rotated away before that happens. Each batch
carries the offset right after its last line, so committing it never loses or repeats a line.

A full queue is the overload policy: the consumer stops asking, so the tailer stops reading
and the lines wait in the file. `tocsin_file_backlog_bytes` shows how far behind each path is.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import math
import os
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

import structlog

from tocsin.model import FileIdentity, FileOffset
from tocsin.obs import (
    FILE_BACKLOG,
    FILE_BYTES,
    FILE_DATA_LOST,
    FILE_ERRORS,
    FILE_INVALID_UTF8,
    FILE_LINES,
    FILE_LINES_CUT,
    FILE_ROTATIONS,
)
from tocsin.sources.fileid import FP_CAP, find_rotated, identify, same_file, same_start

__all__ = ["LineBatch", "LogFileSource"]

log = structlog.get_logger(__name__)

CHUNK_BYTES = 1 << 20  # one os.pread per file and poll reads at most this much
REPORT_EVERY = 60.0  # seconds between repeated warnings about the same problem with a file
_GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)
class LineBatch:
    """Lines read from one file, with the position that marks them all done."""

    path: str
    lines: list[str]
    checkpoint: FileOffset
    read_at: float


@dataclass(slots=True, eq=False)
class _Reader:
    """Read state of one open file: committed offset, read position and the unfinished line."""

    fd: int
    identity: FileIdentity
    offset: int  # right after the last complete line handed over
    pos: int  # where the next read starts; the bytes in between are the unfinished line
    head: bytearray = field(default_factory=bytearray)  # its first max_line_bytes + 1 bytes
    skip: bool = False  # it began before we started reading, so it is dropped
    switch_at: float | None = None  # set once the path holds another file: drain, then move on
    mtime_ns: int = 0  # modification time last seen at EOF

    def take(self, data: bytes, limit: int) -> tuple[list[bytes], int]:
        """Split freshly read bytes into complete raw lines; return them and a base offset.

        Adding len(line) + 1 for each line to the base gives the file offset right after it,
        even when lines[0] is the kept head of an overlong line whose middle was dropped.
        """
        start, self.pos = self.pos, self.pos + len(data)
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data, limit)
            return [], self.offset
        if self.skip or len(self.head) > limit:
            first = data.find(b"\n")
            base = start + first + 1  # where the first line after the overlong one starts
            lines = [] if first == last else data[first + 1 : last].split(b"\n")
            if not self.skip:
                lines.insert(0, bytes(self.head))
                base -= len(self.head) + 1
        else:
            lines = (bytes(self.head) + data[:last]).split(b"\n")
            base = self.offset
        self.head, self.skip, self.offset = bytearray(), False, start + last + 1
        self._hold(data[last + 1 :], limit)
        return lines, base

    def _hold(self, piece: bytes, limit: int) -> None:
        """Keep the start of the unfinished line, bounded so a runaway line cannot eat memory."""
        room = limit + 1 - len(self.head)
        if not self.skip and room > 0:
            self.head += piece[:room]


@dataclass(slots=True, eq=False)
class _Tail:
    """Everything known about one configured or glob-matched path."""

    path: str
    literal: bool  # configured by name, so it is watched even while missing
    resume: FileOffset | None  # where to pick up when the path is next opened
    use_start_at: bool  # it existed at startup, so start_at decides where reading begins
    reader: _Reader | None = None
    pending: _Reader | None = None  # the file now at the path, read once `reader` is drained
    problem: str | None = None
    reported_at: float = -math.inf
    announce: FileOffset | None = None  # a start position to commit before any line is read


class LogFileSource:
    """Pull-based tailer: reads only while the consumer asks, which is the backpressure."""

    def __init__(
        self,
        *,
        patterns: Sequence[str],
        saved: Mapping[str, FileOffset],
        start_at: Literal["end", "beginning"] = "end",
        max_line_bytes: int = 65536,
        batch_lines: int = 2048,
        poll_interval: float = 0.25,
        rescan_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        exclude: Sequence[str] = (),
    ) -> None:
        if isinstance(patterns, str):
            raise TypeError("patterns must be a sequence of paths or globs, not one string")
        if start_at not in ("end", "beginning"):
            raise ValueError(f"start_at must be 'end' or 'beginning', not {start_at!r}")
        if max_line_bytes < 1 or batch_lines < 1:
            raise ValueError("max_line_bytes and batch_lines must be at least 1")
        self._patterns = list(patterns)
        # Live, not copied: the daemon updates it as batches are queued, so a path that leaves
        # and comes back (or a restarted source) resumes after what was already handed over.
        self._saved = saved
        self._start_at = start_at
        self._limit = max_line_bytes
        self._batch_lines = batch_lines
        self._poll_interval = poll_interval
        self._rescan_interval = rescan_interval
        self._clock = clock
        self._tails: dict[str, _Tail] = {}
        # Paths or globs of earlier sources: a file they match is theirs, so it is read once.
        self._exclude = list(exclude)
        self._entered = False
        self._closed = False
        self._iterator: AsyncGenerator[LineBatch, None] | None = None

    async def __aenter__(self) -> Self:
        """Open the files present now, so start_at="end" means the end as of entering."""
        self._entered = True
        self._rescan(initial=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Say what is left unread, close every file descriptor; the iterator ends at its
        next step."""
        self._closed = True
        left = {path: count for path, tail in self._tails.items() if (count := self._left(tail))}
        if left:
            log.info(
                "source_stopped",
                source="files",
                unread_bytes=left,
                note="not handed to the engine; read at the next start",
            )
        for tail in self._tails.values():
            FILE_BACKLOG.remove(tail.path)
            self._close(tail)
        self._tails.clear()

    def _left(self, tail: _Tail) -> int:
        """Bytes of a path after the last line the daemon queued (the saved position)."""
        reader = tail.reader
        if reader is None:
            return 0
        handed = reader.offset
        saved = self._saved.get(tail.path)
        if (
            saved is not None
            and (saved.identity.dev, saved.identity.ino)
            == (reader.identity.dev, reader.identity.ino)
            and saved.offset <= handed
        ):
            handed = saved.offset  # the batch in hand when the daemon stopped never got in
        return _unread(tail) + reader.pos - handed

    def __aiter__(self) -> AsyncIterator[LineBatch]:
        """Return the one batch iterator, so a second `async for` continues where one stopped."""
        if not self._entered:
            raise RuntimeError("enter LogFileSource with `async with` before iterating it")
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def _run(self) -> AsyncGenerator[LineBatch, None]:
        """Poll every file once per round; sleep only when a whole round found nothing."""
        next_scan = time.monotonic() + self._rescan_interval
        while not self._closed:
            if time.monotonic() >= next_scan:
                self._rescan()
                next_scan = time.monotonic() + self._rescan_interval
            busy = False
            for tail in list(self._tails.values()):
                if tail.announce is not None:
                    # Commit where a new file starts, so lines written while we are down
                    # are read at the next start instead of being skipped by start_at: end.
                    announce, tail.announce = tail.announce, None
                    yield LineBatch(tail.path, [], announce, self._clock())
                batches, progressed = self._step(tail)
                busy = busy or progressed
                for batch in batches:
                    yield batch
                    if self._closed:
                        return
            await asyncio.sleep(0 if busy else self._poll_interval)

    # -- discovery ---------------------------------------------------------------------------

    def _rescan(self, *, initial: bool = False) -> None:
        """Pick up newly matching files, retry failed ones and look for rotation."""
        found = self._expand()
        for path, literal in found.items():
            if path not in self._tails:
                resume = self._saved.get(path)
                tail = _Tail(path, literal, resume, use_start_at=initial)
                self._tails[path] = tail
                FILE_BACKLOG.labels(path=path).set_function(functools.partial(_unread, tail))
        for path, tail in list(self._tails.items()):
            if tail.reader is None and not tail.literal and path not in found:
                del self._tails[path]  # a glob-matched file that went away and was reported
                FILE_BACKLOG.remove(path)
                continue
            try:
                self._check(tail)
            except OSError as error:
                self._lost(tail, error)

    def _expand(self) -> dict[str, bool]:
        """Map every path the patterns name now to whether it was named literally."""
        found: dict[str, bool] = {}
        taken = {p for pattern in self._exclude for p in _matches(pattern)}
        for pattern in self._patterns:
            if _GLOB_CHARS.isdisjoint(pattern):
                if pattern not in taken:
                    found[pattern] = True
                continue
            for path in sorted(glob.glob(pattern)):
                if path not in taken and os.path.isfile(path):
                    found.setdefault(path, False)
        return found

    def _check(self, tail: _Tail) -> None:
        """Open a path not being read, or notice that the path now holds another file."""
        reader = tail.reader
        if reader is None:
            self._open(tail)
            return
        if reader.switch_at is not None:
            return
        try:
            st = os.stat(tail.path)
        except FileNotFoundError:
            reader.switch_at = time.monotonic() + self._rescan_interval
            return
        except OSError as error:
            self._report(tail, "unreadable", error)
            return
        _recovered(tail)
        if (st.st_dev, st.st_ino) != (reader.identity.dev, reader.identity.ino):
            # Writers may still append to the renamed file until they reopen: allow a grace time.
            reader.switch_at = time.monotonic() + self._rescan_interval
            tail.pending = self._open_replacement(tail)

    # -- opening -----------------------------------------------------------------------------

    def _open_fd(self, tail: _Tail) -> int | None:
        """Open the path for reading, reporting (not raising) why that is impossible."""
        try:
            fd = os.open(tail.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as error:
            tail.use_start_at = False  # when it appears, everything in it is new
            self._report(tail, "missing", error)
            return None
        except OSError as error:
            self._report(tail, "unreadable", error)
            return None
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            os.close(fd)
            raise
        if not regular:
            os.close(fd)
            self._report(tail, "unreadable", "not a regular file")
            return None
        _recovered(tail)
        return fd

    def _open(self, tail: _Tail) -> None:
        """Start reading a path: resume a saved position, or begin where start_at says."""
        fd = self._open_fd(tail)
        if fd is None:
            if tail.resume is not None and tail.problem == "missing":
                self._continue_rotated(tail, tail.resume, pending=None)
            return
        try:
            fresh = _Reader(fd, identify(fd), 0, 0)
            if tail.resume is not None:
                self._resume(tail, fresh, tail.resume)
            else:
                if tail.use_start_at and self._start_at == "end":
                    fresh.offset, fresh.skip = _end_position(fd, self._limit)
                    fresh.pos = fresh.offset
                tail.reader = fresh
                if not fresh.skip:  # inside an overlong line there is no line boundary to commit
                    tail.announce = FileOffset(tail.path, fresh.identity, fresh.offset)
                log.info("file_opened", path=tail.path, offset=fresh.offset)
        except OSError:
            os.close(fd)
            raise
        tail.resume, tail.use_start_at = None, False

    def _resume(self, tail: _Tail, fresh: _Reader, saved: FileOffset) -> None:
        """Continue from a committed position, even if the file was rotated while we were down."""
        if same_file(fresh.fd, saved.identity) and os.fstat(fresh.fd).st_size >= saved.offset:
            fresh.offset = fresh.pos = saved.offset
            tail.reader = fresh
            log.info("file_resumed", path=tail.path, offset=saved.offset)
            return
        same_inode = (fresh.identity.dev, fresh.identity.ino) == (
            saved.identity.dev,
            saved.identity.ino,
        )
        self._rotated(tail, "truncate" if same_inode else "rename")
        if not self._continue_rotated(tail, saved, pending=fresh):
            FILE_DATA_LOST.labels(path=tail.path, reason="rotated_file_not_found").inc()
            log.warning(
                "lines_may_be_missed",
                path=tail.path,
                reason="the file read before the restart was not found next to it",
                saved_offset=saved.offset,
            )
            tail.reader = fresh

    def _continue_rotated(self, tail: _Tail, saved: FileOffset, *, pending: _Reader | None) -> bool:
        """Read the rest of a rotated file from `saved` first, then `pending` from the start."""
        found = find_rotated(tail.path, saved.identity, min_size=saved.offset)
        if found is None:
            return False
        tail.reader = _Reader(
            found.fd, found.identity, saved.offset, saved.offset, switch_at=-math.inf
        )
        tail.pending, tail.resume = pending, None
        log.info("file_resuming_rotated", path=tail.path, rotated=found.name, offset=saved.offset)
        return True

    def _open_replacement(self, tail: _Tail) -> _Reader | None:
        """Open the new file now at the path, to be read from its first byte."""
        fd = self._open_fd(tail)
        if fd is None:
            return None
        try:
            reader = _Reader(fd, identify(fd), 0, 0)
        except OSError:
            os.close(fd)
            raise
        self._rotated(tail, "rename")
        return reader

    # -- reading -----------------------------------------------------------------------------

    def _step(self, tail: _Tail) -> tuple[list[LineBatch], bool]:
        """Read one chunk of a file; return its batches and whether anything happened."""
        reader = tail.reader
        if reader is None:
            return [], False
        try:
            data = os.pread(reader.fd, CHUNK_BYTES, reader.pos)
            if not data:
                return [], self._at_eof(tail, reader)
            if reader.switch_at is None and not same_start(reader.fd, reader.identity):
                self._truncated(tail, reader)
                return [], True
            return self._batches(tail, reader, data), True
        except OSError as error:
            self._lost(tail, error)
            return [], False

    def _batches(self, tail: _Tail, reader: _Reader, data: bytes) -> list[LineBatch]:
        """Turn one chunk into batches of at most batch_lines lines, counting it once."""
        if reader.identity.fp_len < min(reader.pos + len(data), FP_CAP):
            reader.identity = identify(reader.fd)  # before take(): a failure must lose nothing
        raws, end = reader.take(data, self._limit)
        read_at = self._clock()
        batches: list[LineBatch] = []
        cut = invalid = 0
        for first in range(0, len(raws), self._batch_lines):
            part = raws[first : first + self._batch_lines]
            end += sum(map(len, part)) + len(part)
            lines, part_cut, part_invalid = _decode(part, self._limit)
            cut, invalid = cut + part_cut, invalid + part_invalid
            checkpoint = FileOffset(path=tail.path, identity=reader.identity, offset=end)
            batches.append(LineBatch(tail.path, lines, checkpoint, read_at))
        FILE_BYTES.labels(path=tail.path).inc(len(data))
        FILE_LINES.labels(path=tail.path).inc(len(raws))
        if cut:
            FILE_LINES_CUT.labels(path=tail.path).inc(cut)
        if invalid:
            FILE_INVALID_UTF8.labels(path=tail.path).inc(invalid)
        return batches

    def _at_eof(self, tail: _Tail, reader: _Reader) -> bool:
        """At end of file: notice truncation, or move past a drained rotated file."""
        if reader.switch_at is None:
            info = os.fstat(reader.fd)
            if info.st_size < reader.pos:
                self._truncated(tail, reader)
                return True
            if info.st_mtime_ns != reader.mtime_ns:
                # Written to but no longer than our position: truncated and refilled to the
                # same size between two polls, which only the first bytes can tell.
                reader.mtime_ns = info.st_mtime_ns
                if not same_start(reader.fd, reader.identity):
                    self._truncated(tail, reader)
                    return True
            return False
        if time.monotonic() < reader.switch_at:
            return False
        if reader.pos > reader.offset:
            FILE_DATA_LOST.labels(path=tail.path, reason="partial_line_dropped").inc()
            log.warning("partial_line_dropped", path=tail.path, bytes=reader.pos - reader.offset)
        os.close(reader.fd)
        tail.reader, tail.pending = tail.pending, None
        if tail.reader is None:
            tail.reader = self._open_replacement(tail)
        return True

    def _truncated(self, tail: _Tail, reader: _Reader) -> None:
        """Start the file over, after reading what a copytruncate copy holds beyond our offset."""
        self._rotated(tail, "truncate")
        fresh = _Reader(reader.fd, identify(reader.fd), 0, 0)
        saved = FileOffset(path=tail.path, identity=reader.identity, offset=reader.offset)
        if not self._continue_rotated(tail, saved, pending=fresh):
            tail.reader = fresh

    # -- trouble -----------------------------------------------------------------------------

    def _rotated(self, tail: _Tail, kind: str) -> None:
        """Count and log one rotation of a path."""
        FILE_ROTATIONS.labels(path=tail.path, kind=kind).inc()
        log.info("file_rotated", path=tail.path, kind=kind)

    def _report(self, tail: _Tail, reason: str, error: object) -> None:
        """Count a problem when it starts; warn about it at most once per REPORT_EVERY."""
        now = time.monotonic()
        if tail.problem != reason:
            FILE_ERRORS.labels(path=tail.path, reason=reason).inc()
            tail.problem, tail.reported_at = reason, -math.inf
        if now - tail.reported_at >= REPORT_EVERY:
            log.warning(f"file_{reason}", path=tail.path, error=str(error))
            tail.reported_at = now

    def _lost(self, tail: _Tail, error: OSError) -> None:
        """Give up the open file after an I/O error; the next rescan resumes at the checkpoint."""
        if tail.reader is not None:
            reader = tail.reader
            tail.resume = FileOffset(path=tail.path, identity=reader.identity, offset=reader.offset)
        self._close(tail)
        self._report(tail, "unreadable", error)

    @staticmethod
    def _close(tail: _Tail) -> None:
        """Close the descriptors a path holds."""
        for reader in (tail.reader, tail.pending):
            if reader is not None:
                os.close(reader.fd)
        tail.reader = tail.pending = None


def _matches(pattern: str) -> list[str]:
    """Return the paths a pattern names now: itself when literal, else what its glob finds."""
    return [pattern] if _GLOB_CHARS.isdisjoint(pattern) else glob.glob(pattern)


def _unread(tail: _Tail) -> int:
    """Bytes of a path not read yet: the rest of the open file and all of the one after it."""
    total = 0
    for reader in (tail.reader, tail.pending):
        if reader is not None:
            try:
                total += max(0, os.fstat(reader.fd).st_size - reader.pos)
            except OSError:  # unreadable now: the tailer reports that itself
                continue
    return total


def _recovered(tail: _Tail) -> None:
    """Log the end of a reported problem, so the next one is counted again."""
    if tail.problem is not None:
        log.info("file_recovered", path=tail.path, problem=tail.problem)
        tail.problem = None


def _end_position(fd: int, limit: int) -> tuple[int, bool]:
    """Return where the line being written now starts, and whether it is too far back to keep."""
    size = os.fstat(fd).st_size
    window = min(size, limit + 1)
    newline = os.pread(fd, window, size - window).rfind(b"\n")
    if newline >= 0:
        return size - window + newline + 1, False
    if window == size:
        return 0, False
    return size, True


def _decode(raws: list[bytes], limit: int) -> tuple[list[str], int, int]:
    """Decode one batch: strictly in one go if possible, else line by line with replacement."""
    cut = 0
    if max(map(len, raws)) > limit:
        cut = sum(len(raw) > limit for raw in raws)
        raws = [_cut(raw, limit) if len(raw) > limit else raw for raw in raws]
    try:
        return b"\n".join(raws).decode("utf-8").split("\n"), cut, 0
    except UnicodeDecodeError:
        pass
    lines: list[str] = []
    invalid = 0
    for raw in raws:
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("utf-8", errors="replace"))
            invalid += 1
    return lines, cut, invalid


def _cut(raw: bytes, limit: int) -> bytes:
    """Cut a line to `limit` bytes, backing off so no UTF-8 character is split in two."""
    end = limit
    while end > max(limit - 3, 1) and raw[end] & 0xC0 == 0x80:
        end -= 1
    return raw[:end]
