"""The tailer's overload side: lines wait in the file while the consumer does not ask, the
backlog gauge says how many bytes, and a stop says what was not handed over."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tocsin.model import FileOffset
from tocsin.sources.logfile import LogFileSource

LINE = b"Nov 25 10:00:00 web1 app[1]: something happened, line %05d\n"


def backlog(path: Path) -> float | None:
    """The gauge's reading at scrape time (None once the path is no longer tailed)."""
    return REGISTRY.get_sample_value("tocsin_file_backlog_bytes", {"path": str(path)})


def write(path: Path, first: int, count: int) -> int:
    """Append numbered lines; return how many bytes."""
    data = b"".join(LINE % n for n in range(first, first + count))
    with path.open("ab") as handle:
        handle.write(data)
    return len(data)


async def test_unread_bytes_show_while_the_consumer_waits_and_drain_as_it_reads(
    tmp_path: Path,
) -> None:
    """Test that the gauge follows the file's unread bytes, not a stale value, and that the
    path's series goes away with the source."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    saved: dict[str, FileOffset] = {}
    async with LogFileSource(
        patterns=[str(log)], saved=saved, start_at="beginning", batch_lines=100,
        poll_interval=0.01, rescan_interval=1.0,
    ) as tail:  # fmt: skip
        batches = aiter(tail)
        assert backlog(log) == 0
        size = write(log, 0, 1000)
        assert backlog(log) == size  # nothing asked for: nothing read
        write(log, 1000, 1000)
        assert backlog(log) == 2 * size
        lines = 0
        while lines < 2000:
            batch = await anext(batches)
            lines += len(batch.lines)
        assert backlog(log) == 0
    assert backlog(log) is None


async def test_a_stop_reports_the_bytes_after_the_last_queued_line(tmp_path: Path) -> None:
    """Test that the stop counts from the position the daemon saved for its last queued batch,
    so the batch in hand when it stopped (never queued) is counted as left."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    saved: dict[str, FileOffset] = {}
    with capture_logs() as logs:
        async with LogFileSource(
            patterns=[str(log)], saved=saved, start_at="beginning", batch_lines=100,
            poll_interval=0.01, rescan_interval=1.0,
        ) as tail:  # fmt: skip
            batches = aiter(tail)
            size = write(log, 0, 1000)
            queued = 0
            while queued < 300:
                batch = await anext(batches)
                queued += len(batch.lines)
                saved[str(log)] = batch.checkpoint  # what the daemon does once it is queued
            await anext(batches)  # in hand when the daemon stops: not queued
    stopped = [entry for entry in logs if entry["event"] == "source_stopped"]
    assert len(stopped) == 1
    assert stopped[0]["source"] == "files"
    assert stopped[0]["unread_bytes"] == {str(log): size - 300 * len(LINE % 0)}
