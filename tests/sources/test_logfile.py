"""The log-file tailer against real files, real renames and the real logrotate binary."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tocsin.model import FileIdentity, FileOffset
from tocsin.sources.fileid import FP_CAP, find_rotated, identify
from tocsin.sources.logfile import CHUNK_BYTES, LineBatch, LogFileSource

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
needs_logrotate = pytest.mark.skipif(
    not os.access(LOGROTATE, os.X_OK), reason=f"logrotate binary not found at {LOGROTATE}"
)


def metric(name: str, **labels: str) -> float:
    """Read a process-global counter, 0 when it has no sample yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def source(patterns: list[str], **kwargs: Any) -> LogFileSource:
    """Build a tailer with intervals small enough for fast tests."""
    kwargs.setdefault("saved", {})
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("rescan_interval", 0.03)
    return LogFileSource(patterns=patterns, **kwargs)


async def take(batches: AsyncIterator[LineBatch], count: int) -> list[LineBatch]:
    """Collect batches with lines until `count` lines arrived, failing after 5 seconds.

    Line-less batches (the start position of a newly opened file) are left out.
    """
    got: list[LineBatch] = []

    async def collect() -> None:
        while sum(len(batch.lines) for batch in got) < count:
            batch = await anext(batches)
            if batch.lines:
                got.append(batch)

    await asyncio.wait_for(collect(), 5)
    return got


async def take_lines(batches: AsyncIterator[LineBatch], count: int) -> list[str]:
    """Collect exactly `count` lines' text."""
    lines = [line for batch in await take(batches, count) for line in batch.lines]
    assert len(lines) == count, lines
    return lines


async def assert_quiet(batches: AsyncIterator[LineBatch], seconds: float = 0.15) -> None:
    """Assert nothing more arrives; this ends the iterator, so call it last."""
    try:
        extra = await asyncio.wait_for(anext(batches), seconds)
    except TimeoutError:
        return
    pytest.fail(f"unexpected batch {extra}")


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait up to 5 seconds for a condition that a background poll makes true."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("condition not met within 5 seconds")


def append(path: Path, text: str | bytes) -> None:
    """Append like a logging process does."""
    data = text.encode() if isinstance(text, str) else text
    with path.open("ab") as file:
        file.write(data)


def numbered(prefix: str, first: int, last: int) -> str:
    """Lines `prefix first` .. `prefix last`, newline-terminated."""
    return "".join(f"{prefix} {n}\n" for n in range(first, last + 1))


def names(prefix: str, first: int, last: int) -> list[str]:
    """The lines `numbered` writes, without newlines."""
    return numbered(prefix, first, last).splitlines()


def logrotate(tmp_path: Path, log: Path, directive: str) -> None:
    """Rotate `log` with the real logrotate binary, forced, with a private state file."""
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 3\n    {directive}\n    nocompress\n    missingok\n}}\n")
    subprocess.run(
        [LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
        check=True,
        capture_output=True,
        timeout=10,
    )


async def checkpoint_after(log: Path, count: int, **kwargs: Any) -> FileOffset:
    """Read `count` lines from the beginning and return the last checkpoint, as the store would."""
    async with source([str(log)], start_at="beginning", **kwargs) as tail:
        batches = await take(aiter(tail), count)
    assert sum(len(batch.lines) for batch in batches) == count
    return batches[-1].checkpoint


# -- reading ---------------------------------------------------------------------------------


async def test_start_at_end_reads_only_lines_completed_later(tmp_path: Path) -> None:
    """Test that start_at end reads only lines completed later."""
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\nhalf")
    async with source([str(log)]) as tail:
        batches = aiter(tail)
        append(log, " done\nnew 1\n")
        assert await take_lines(batches, 2) == ["half done", "new 1"]
        await assert_quiet(batches)


async def test_new_file_start_is_committed_before_any_line(tmp_path: Path) -> None:
    """Test that opening a new file first hands over its start position with no lines."""
    log = tmp_path / "app.log"
    log.write_text(numbered("old", 1, 3))
    async with source([str(log)]) as tail:
        first = await asyncio.wait_for(anext(aiter(tail)), 5)
    assert first.lines == []
    assert first.checkpoint.offset == log.stat().st_size
    assert first.checkpoint.identity.ino == log.stat().st_ino


async def test_lines_written_while_down_after_an_idle_run_are_read(tmp_path: Path) -> None:
    """Test that a file read from its end, with no line read before a restart, loses nothing."""
    log = tmp_path / "app.log"
    log.write_text(numbered("old", 1, 3))
    async with source([str(log)]) as tail:
        start = (await asyncio.wait_for(anext(aiter(tail)), 5)).checkpoint
    append(log, numbered("while-down", 1, 2))
    async with source([str(log)], saved={str(log): start}) as tail:
        assert await take_lines(aiter(tail), 2) == names("while-down", 1, 2)


async def test_a_path_an_earlier_source_matches_is_left_to_it(tmp_path: Path) -> None:
    """Test that a source skips files that an earlier source's patterns name, even later ones."""
    log = tmp_path / "app.log"
    log.write_text("")
    earlier = [str(tmp_path / "*.log")]
    async with source([str(log), str(tmp_path / "other.txt")], exclude=earlier) as second:
        (tmp_path / "other.txt").write_text(numbered("other", 1, 1))
        append(log, numbered("line", 1, 2))
        assert await take_lines(aiter(second), 1) == ["other 1"]
        await assert_quiet(aiter(second))


async def test_start_at_beginning_reads_everything(tmp_path: Path) -> None:
    """Test that start_at beginning reads everything."""
    log = tmp_path / "app.log"
    log.write_text(numbered("line", 1, 3))
    async with source([str(log)], start_at="beginning") as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 3) == names("line", 1, 3)
        append(log, "line 4\n")
        assert await take_lines(batches, 1) == ["line 4"]


async def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    """Test that partial line waits for its newline."""
    log = tmp_path / "app.log"
    log.write_text("a\nb")
    async with source([str(log)], start_at="beginning") as tail:
        batches = aiter(tail)
        [first] = await take(batches, 1)
        assert first.lines == ["a"]
        assert first.checkpoint.offset == 2
        append(log, "c")
        await asyncio.sleep(0.05)
        append(log, "d\n")
        [second] = await take(batches, 1)
        assert second.lines == ["bcd"]
        assert second.checkpoint.offset == 6
        await assert_quiet(batches)


async def test_batches_are_bounded_and_checkpoints_exact(tmp_path: Path) -> None:
    """Test that batches are bounded and checkpoints exact."""
    log = tmp_path / "app.log"
    text = numbered("line", 1, 5000)
    log.write_text(text)
    path = str(log)
    lines_before = metric("tocsin_file_lines_read_total", path=path)
    bytes_before = metric("tocsin_file_bytes_read_total", path=path)
    async with source([path], start_at="beginning", batch_lines=2048, clock=lambda: 42.0) as tail:
        batches = await take(aiter(tail), 5000)
    assert [len(batch.lines) for batch in batches] == [2048, 2048, 904]
    assert [line for batch in batches for line in batch.lines] == text.splitlines()
    data = text.encode()
    done = 0
    for batch in batches:
        done += len(batch.lines)
        assert batch.path == path
        assert batch.read_at == 42.0
        assert batch.checkpoint.offset == len(numbered("line", 1, done))
    assert metric("tocsin_file_lines_read_total", path=path) - lines_before == 5000
    assert metric("tocsin_file_bytes_read_total", path=path) - bytes_before == len(data)


async def test_reading_waits_for_the_consumer(tmp_path: Path) -> None:
    """Test that reading waits for the consumer."""
    log = tmp_path / "app.log"
    path = str(log)
    log.write_text(numbered("x" * 90, 1, 40000))  # about 4 MiB
    before = metric("tocsin_file_bytes_read_total", path=path)
    async with source([path], start_at="beginning", batch_lines=10) as tail:
        batches = aiter(tail)
        await take(batches, 10)
        await asyncio.sleep(0.05)  # polls would run now if reading did not wait for us
        await take(batches, 10)
    assert metric("tocsin_file_bytes_read_total", path=path) - before == CHUNK_BYTES


async def test_long_lines_are_cut_once_and_the_rest_dropped(tmp_path: Path) -> None:
    """Test that long lines are cut once and the rest dropped."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_lines_cut_total", path=path)
    log.write_text("0123456789abcdef\nshort\n")
    async with source([path], start_at="beginning", max_line_bytes=10) as tail:
        batches = aiter(tail)
        got = await take(batches, 2)
        assert [line for batch in got for line in batch.lines] == ["0123456789", "short"]
        assert got[-1].checkpoint.offset == 23
        append(log, "ABCDEFGH")  # an overlong line arriving in pieces
        await asyncio.sleep(0.05)
        append(log, "IJKLMNOP")
        await asyncio.sleep(0.05)
        append(log, "QRST\nnext\n")
        [cut] = await take(batches, 2)
        assert cut.lines == ["ABCDEFGHIJ", "next"]
        assert cut.checkpoint.offset == log.stat().st_size
        append(log, "é" * 8 + "\n")  # 16 bytes; a cut at 10 must not split a character
        [utf8] = await take(batches, 1)
        assert utf8.lines == ["é" * 5]
        await assert_quiet(batches)
    assert metric("tocsin_file_lines_cut_total", path=path) - before == 3


async def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path) -> None:
    """Test that invalid UTF-8 is replaced and counted."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_invalid_utf8_lines_total", path=path)
    log.write_bytes(b"ok\n\xff\xfebad\nfine \xc3\xa9\n\xc3\n")
    async with source([path], start_at="beginning") as tail:
        lines = await take_lines(aiter(tail), 4)
    assert lines == ["ok", "\ufffd\ufffdbad", "fine é", "\ufffd"]
    assert metric("tocsin_file_invalid_utf8_lines_total", path=path) - before == 2


async def test_start_at_end_inside_an_overlong_line_drops_it(tmp_path: Path) -> None:
    """Test that start_at end inside an overlong line drops it."""
    log = tmp_path / "app.log"
    log.write_text("old\n" + "x" * 50)
    async with source([str(log)], max_line_bytes=10) as tail:
        batches = aiter(tail)
        append(log, "yyy\nnew\n")
        [batch] = await take(batches, 1)
        assert batch.lines == ["new"]
        assert batch.checkpoint.offset == log.stat().st_size


# -- rotation while running ------------------------------------------------------------------


async def test_rename_and_create_finishes_the_old_file_first(tmp_path: Path) -> None:
    """Test that rename and create finishes the old file first."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_rotations_total", path=path, kind="rename")
    log.write_text("")
    async with source([path]) as tail:
        batches = aiter(tail)
        append(log, numbered("old", 1, 3))
        assert await take_lines(batches, 3) == names("old", 1, 3)
        with log.open("ab") as writer:  # the writer keeps its descriptor across the rename
            os.rename(log, tmp_path / "app.log.1")
            log.write_text(numbered("new", 1, 2))
            writer.write(numbered("old", 4, 5).encode())
        got = await take(batches, 4)
        assert [line for batch in got for line in batch.lines] == [
            *names("old", 4, 5),
            *names("new", 1, 2),
        ]
        assert got[-1].checkpoint.identity.ino == log.stat().st_ino
        await assert_quiet(batches)
    assert metric("tocsin_file_rotations_total", path=path, kind="rename") - before == 1


async def test_renamed_file_is_still_read_for_a_grace_time(tmp_path: Path) -> None:
    """Test that renamed file is still read for a grace time."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_rotations_total", path=path, kind="rename")
    log.write_text("")
    async with source([path], rescan_interval=0.3) as tail:
        reading = asyncio.create_task(take(aiter(tail), 3))
        with log.open("ab", buffering=0) as writer:
            os.rename(log, tmp_path / "app.log.1")
            log.write_text("new 1\n")
            await eventually(
                lambda: metric("tocsin_file_rotations_total", path=path, kind="rename") > before
            )
            writer.write(b"late 1\nlate 2\n")  # the app has not reopened its log yet
        got = await reading
    assert [line for batch in got for line in batch.lines] == ["late 1", "late 2", "new 1"]


async def test_truncation_starts_over(tmp_path: Path) -> None:
    """Test that truncation starts over."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_rotations_total", path=path, kind="truncate")
    log.write_text(numbered("old", 1, 3))
    async with source([path], start_at="beginning") as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 3) == names("old", 1, 3)
        os.truncate(log, 0)
        append(log, "fresh 1\n")
        [batch] = await take(batches, 1)
        assert batch.lines == ["fresh 1"]
        assert batch.checkpoint.offset == 8
        await assert_quiet(batches)
    assert metric("tocsin_file_rotations_total", path=path, kind="truncate") - before == 1


async def test_truncate_and_refill_past_our_offset_is_caught_by_fingerprint(
    tmp_path: Path,
) -> None:
    """Test that truncate and refill past our offset is caught by fingerprint."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_rotations_total", path=path, kind="truncate")
    log.write_text("first generation\n")
    async with source([path], start_at="beginning") as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 1) == ["first generation"]
        with log.open("r+b") as file:  # rewritten in place, longer than what we had read
            file.truncate(0)
            file.write(numbered("second", 1, 4).encode())
        assert await take_lines(batches, 4) == names("second", 1, 4)
        await assert_quiet(batches)
    assert metric("tocsin_file_rotations_total", path=path, kind="truncate") - before == 1


async def test_truncate_and_refill_to_the_same_size_is_caught(tmp_path: Path) -> None:
    """Test that a file truncated and refilled to exactly our offset between polls is reread."""
    log = tmp_path / "app.log"
    path = str(log)
    log.write_text("generation 1\n")
    async with source([path], start_at="beginning") as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 1) == ["generation 1"]
        stamp = log.stat().st_mtime_ns
        with log.open("r+b") as file:
            file.truncate(0)
            file.write(b"generation 2\n")
        os.utime(log, ns=(stamp + 1_000_000, stamp + 1_000_000))  # coarse clocks: force a change
        assert await take_lines(batches, 1) == ["generation 2"]
        await assert_quiet(batches)


async def test_deleted_and_recreated_file_is_read_from_its_start(tmp_path: Path) -> None:
    """Test that deleted and recreated file is read from its start."""
    log = tmp_path / "app.log"
    log.write_text("one\n")
    async with source([str(log)], start_at="beginning") as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 1) == ["one"]
        log.unlink()
        log.write_text("another file\nsecond line\n")
        assert await take_lines(batches, 2) == ["another file", "second line"]
        await assert_quiet(batches)


@needs_logrotate
async def test_logrotate_create(tmp_path: Path) -> None:
    """Test that logrotate create."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_rotations_total", path=path, kind="rename")
    log.write_text("")
    async with source([path]) as tail:
        batches = aiter(tail)
        with log.open("ab", buffering=0) as writer:
            writer.write(numbered("before", 1, 3).encode())
            assert await take_lines(batches, 3) == names("before", 1, 3)
            logrotate(tmp_path, log, "create")
            assert (tmp_path / "app.log.1").exists()
            writer.write(numbered("late", 1, 2).encode())  # before the app reopens its log
        append(log, numbered("after", 1, 3))
        lines = await take_lines(batches, 5)
        assert lines == [*names("late", 1, 2), *names("after", 1, 3)]
        await assert_quiet(batches)
    assert metric("tocsin_file_rotations_total", path=path, kind="rename") - before == 1


@needs_logrotate
async def test_logrotate_copytruncate(tmp_path: Path) -> None:
    """Test that logrotate copytruncate."""
    log = tmp_path / "app.log"
    path = str(log)
    before = metric("tocsin_file_rotations_total", path=path, kind="truncate")
    log.write_text("")
    async with source([path]) as tail:
        batches = aiter(tail)
        with log.open("ab", buffering=0) as writer:
            writer.write(numbered("before", 1, 3).encode())
            assert await take_lines(batches, 3) == names("before", 1, 3)
            writer.write(numbered("unread", 1, 2).encode())  # rotated before we read them
            logrotate(tmp_path, log, "copytruncate")
            assert log.stat().st_size == 0
            writer.write(numbered("after", 1, 3).encode())
        lines = await take_lines(batches, 5)
        assert lines == [*names("unread", 1, 2), *names("after", 1, 3)]
        await assert_quiet(batches)
    assert metric("tocsin_file_rotations_total", path=path, kind="truncate") - before == 1


# -- resuming after a restart ----------------------------------------------------------------


async def test_resume_neither_skips_nor_repeats(tmp_path: Path) -> None:
    """Test that resume neither skips nor repeats."""
    log = tmp_path / "app.log"
    log.write_text(numbered("line", 1, 10) + "partial")
    saved = await checkpoint_after(log, 6, batch_lines=3)
    append(log, " done\n" + numbered("line", 11, 12))
    async with source([str(log)], saved={str(log): saved}) as tail:
        lines = await take_lines(aiter(tail), 7)
    assert lines == [*names("line", 7, 10), "partial done", *names("line", 11, 12)]


async def test_resume_after_rename_while_down(tmp_path: Path) -> None:
    """Test that resume after rename while down."""
    log = tmp_path / "app.log"
    path = str(log)
    log.write_text(numbered("old", 1, 4))
    saved = await checkpoint_after(log, 4)
    append(log, numbered("old", 5, 6))  # written after the last commit, then kill -9
    os.rename(log, tmp_path / "app.log.1")
    log.write_text(numbered("new", 1, 2))
    before = metric("tocsin_file_rotations_total", path=path, kind="rename")
    async with source([path], saved={path: saved}) as tail:
        batches = aiter(tail)
        got = await take(batches, 4)
        assert [line for batch in got for line in batch.lines] == [
            *names("old", 5, 6),
            *names("new", 1, 2),
        ]
        assert got[0].path == path
        assert got[-1].checkpoint.identity.ino == log.stat().st_ino
        await assert_quiet(batches)
    assert metric("tocsin_file_rotations_total", path=path, kind="rename") - before == 1


async def test_resume_after_several_dated_rotations_finds_the_right_file(tmp_path: Path) -> None:
    """Test that resume after several dated rotations finds the right file."""
    log = tmp_path / "app.log"
    log.write_text(numbered("gen1", 1, 2))
    saved = await checkpoint_after(log, 2)
    append(log, "gen1 3\n")
    os.rename(log, tmp_path / "app.log-20261124")
    (tmp_path / "app.log-20261124.gz").write_bytes(b"\x1f\x8b not really")
    log.write_text("gen2 1\n")
    async with source([str(log)], saved={str(log): saved}) as tail:
        assert await take_lines(aiter(tail), 2) == ["gen1 3", "gen2 1"]


@needs_logrotate
async def test_resume_after_copytruncate_while_down(tmp_path: Path) -> None:
    """Test that resume after copytruncate while down."""
    log = tmp_path / "app.log"
    log.write_text(numbered("old", 1, 3))
    saved = await checkpoint_after(log, 3)
    append(log, numbered("old", 4, 5))
    logrotate(tmp_path, log, "copytruncate")
    append(log, "new 1\n")
    async with source([str(log)], saved={str(log): saved}) as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 3) == [*names("old", 4, 5), "new 1"]
        await assert_quiet(batches)


async def test_resume_when_the_rotated_file_is_gone_reads_new_file_and_warns(
    tmp_path: Path,
) -> None:
    """Test that resume when the rotated file is gone reads new file and warns."""
    log = tmp_path / "app.log"
    log.write_text(numbered("old", 1, 3))
    saved = await checkpoint_after(log, 3)
    log.unlink()
    log.write_text("new 1\n")
    with capture_logs() as logs:
        async with source([str(log)], saved={str(log): saved}) as tail:
            assert await take_lines(aiter(tail), 1) == ["new 1"]
    assert any(entry["event"] == "lines_may_be_missed" for entry in logs)


async def test_resume_with_reused_inode_starts_over(tmp_path: Path) -> None:
    """Test that resume with reused inode starts over."""
    log = tmp_path / "app.log"
    log.write_text("a different file\nline 2\n")
    st = log.stat()
    other = b"the file we had read"
    identity = FileIdentity(
        dev=st.st_dev,
        ino=st.st_ino,
        fp_len=len(other),
        fp_hash=hashlib.blake2b(other, digest_size=16).hexdigest(),
    )
    saved = FileOffset(path=str(log), identity=identity, offset=17)
    async with source([str(log)], saved={str(log): saved}) as tail:
        lines = await take_lines(aiter(tail), 2)
    assert lines == ["a different file", "line 2"]


async def test_resume_after_delete_and_create_while_down_reads_new_file(tmp_path: Path) -> None:
    """Test that resume after delete and create while down reads new file."""
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    saved = await checkpoint_after(log, 2)
    log.unlink()
    log.write_text(numbered("new", 1, 3))  # ext4 and tmpfs usually hand out the same inode again
    async with source([str(log)], saved={str(log): saved}) as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 3) == names("new", 1, 3)
        await assert_quiet(batches)


async def test_resume_on_a_shorter_file_starts_over(tmp_path: Path) -> None:
    """Test that resume on a shorter file starts over."""
    log = tmp_path / "app.log"
    log.write_text(numbered("line", 1, 5))
    saved = await checkpoint_after(log, 5)
    os.truncate(log, 7)  # same inode and first bytes, but shorter than the saved offset
    append(log, "x\n")
    async with source([str(log)], saved={str(log): saved}) as tail:
        assert await take_lines(aiter(tail), 2) == ["line 1", "x"]


async def test_resume_when_path_missing_drains_rotated_file(tmp_path: Path) -> None:
    """Test that resume when path missing drains rotated file."""
    log = tmp_path / "app.log"
    log.write_text(numbered("old", 1, 2))
    saved = await checkpoint_after(log, 2)
    append(log, "old 3\n")
    os.rename(log, tmp_path / "app.log.1")  # rotated with nocreate; the app recreates it later
    async with source([str(log)], saved={str(log): saved}) as tail:
        batches = aiter(tail)
        assert await take_lines(batches, 1) == ["old 3"]
        log.write_text("new 1\n")
        assert await take_lines(batches, 1) == ["new 1"]


# -- discovery and trouble -------------------------------------------------------------------


async def test_missing_file_is_reported_and_read_from_start_when_it_appears(
    tmp_path: Path,
) -> None:
    """Test that missing file is reported and read from start when it appears."""
    log = tmp_path / "later.log"
    path = str(log)
    before = metric("tocsin_file_errors_total", path=path, reason="missing")
    with capture_logs() as logs:
        async with source([path]) as tail:
            batches = aiter(tail)
            await asyncio.sleep(0.1)  # several rescans while it is missing
            log.write_text("first\nsecond\n")
            assert await take_lines(batches, 2) == ["first", "second"]
    assert metric("tocsin_file_errors_total", path=path, reason="missing") - before == 1
    assert [entry["event"] for entry in logs].count("file_missing") == 1


async def test_glob_picks_up_new_files_from_their_start(tmp_path: Path) -> None:
    """Test that glob picks up new files from their start."""
    (tmp_path / "a.log").write_text("a old\n")
    (tmp_path / "notes.txt").write_text("not matched\n")
    async with source([str(tmp_path / "*.log")]) as tail:
        batches = aiter(tail)
        (tmp_path / "b.log").write_text("b 1\nb 2\n")
        append(tmp_path / "a.log", "a new\n")
        got = await take(batches, 3)
    by_path = {batch.path: batch.lines for batch in got}
    assert by_path == {str(tmp_path / "a.log"): ["a new"], str(tmp_path / "b.log"): ["b 1", "b 2"]}


async def test_vanished_file_is_reported_and_others_keep_going(tmp_path: Path) -> None:
    """Test that vanished file is reported and others keep going."""
    gone, kept = tmp_path / "gone.log", tmp_path / "kept.log"
    gone.write_text("")
    kept.write_text("")
    before = metric("tocsin_file_errors_total", path=str(gone), reason="missing")
    async with source([str(gone), str(kept)]) as tail:
        reading = asyncio.create_task(take(aiter(tail), 1))  # the tailer works while pulled
        gone.unlink()
        await eventually(
            lambda: metric("tocsin_file_errors_total", path=str(gone), reason="missing") > before
        )
        append(kept, "still here\n")
        [batch] = await reading
        assert batch.path == str(kept)


def _root_reads_anything(path: Path) -> bool:
    """Tell whether chmod 000 fails to stop us (root has CAP_DAC_OVERRIDE)."""
    path.write_text("")
    path.chmod(0)
    try:
        path.open("rb").close()
    except PermissionError:
        return False
    finally:
        path.unlink()
    return True


async def test_unreadable_file_is_reported_and_retried(tmp_path: Path) -> None:
    """Test that unreadable file is reported and retried."""
    if _root_reads_anything(tmp_path / "probe"):
        pytest.skip("running with permission to read mode-000 files (root), cannot test EACCES")
    log = tmp_path / "secret.log"
    path = str(log)
    log.write_text("hidden\n")
    log.chmod(0)
    before = metric("tocsin_file_errors_total", path=path, reason="unreadable")
    async with source([path], start_at="beginning") as tail:
        batches = aiter(tail)
        assert metric("tocsin_file_errors_total", path=path, reason="unreadable") - before == 1
        log.chmod(0o644)
        assert await take_lines(batches, 1) == ["hidden"]


async def test_exit_closes_descriptors_and_ends_iteration(tmp_path: Path) -> None:
    """Test that exit closes descriptors and ends iteration."""
    logs = [tmp_path / f"{n}.log" for n in range(3)]
    for log in logs:
        log.write_text("x\n")
    open_before = len(os.listdir("/proc/self/fd"))
    tail = source([str(tmp_path / "*.log")])
    async with tail:
        assert len(os.listdir("/proc/self/fd")) == open_before + 3
        batches = aiter(tail)
    assert len(os.listdir("/proc/self/fd")) == open_before
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(batches), 1)


async def test_iterating_before_entering_is_an_error() -> None:
    """Test that iterating before entering is an error."""
    with pytest.raises(RuntimeError):
        aiter(source(["/nonexistent.log"]))


# -- identity helpers ------------------------------------------------------------------------


def test_fingerprint_grows_with_the_file_up_to_the_cap(tmp_path: Path) -> None:
    """Test that fingerprint grows with the file up to the cap."""
    log = tmp_path / "app.log"
    log.write_bytes(b"abc")
    fd = os.open(log, os.O_RDONLY)
    try:
        assert identify(fd).fp_len == 3
        log.write_bytes(b"x" * (FP_CAP * 2))
        grown = identify(fd)
    finally:
        os.close(fd)
    assert grown.fp_len == FP_CAP
    assert grown.fp_hash == hashlib.blake2b(b"x" * FP_CAP, digest_size=16).hexdigest()


def test_find_rotated_ignores_compressed_copies(tmp_path: Path) -> None:
    """Test that find rotated ignores compressed copies."""
    log = tmp_path / "app.log"
    log.write_text("same start\n")
    fd = os.open(log, os.O_RDONLY)
    try:
        identity = identify(fd)
    finally:
        os.close(fd)
    log.unlink()
    (tmp_path / "app.log.1.gz").write_text("same start\n")
    assert find_rotated(str(log), identity, min_size=0) is None
    (tmp_path / "app.log.1").write_text("same start\nmore\n")
    found = find_rotated(str(log), identity, min_size=5)
    assert found is not None
    os.close(found.fd)
    assert found.name == "app.log.1"
