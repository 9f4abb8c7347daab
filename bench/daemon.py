"""Daemon benchmark: `tocsin run` tails the generated syslog file from its start to durable done."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import run
import translate
import yaml

POLL_SECONDS = 0.1
STOP_TIMEOUT = 30.0
LOG = run.OUT / "daemon.log"  # the daemon's stdout and stderr (JSON lines, warnings and up)
WATCH = (  # counters that should stay at zero on this file; any other value is printed
    "tocsin_parse_errors_total",
    "tocsin_actions_failed_total",
    "tocsin_store_failures_total",
    "tocsin_file_errors_total",
    "tocsin_file_lines_cut_total",
    "tocsin_file_invalid_utf8_lines_total",
    "tocsin_file_rotations_total",
)

Metrics = dict[str, float]  # sample name with its labels, as /metrics writes it -> value


@dataclass(slots=True)
class Outcome:
    """What one daemon run measured."""

    lines: int
    started: float = 0.0  # perf_counter at Popen
    ready: float = 0.0  # first /healthz 200
    done: float = 0.0  # all lines counted and the file's end committed
    stopped: float = 0.0  # exit after SIGTERM
    peak_kib: int = 0
    exit_code: int | None = None
    metrics: Metrics = field(default_factory=dict)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (share counted, VmRSS KiB)
    failure: str = ""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(tmp: Path, log_file: Path, port: int, rules: Path) -> Path:
    """Write the daemon's config into `tmp` and return its path."""
    config = {
        "state_dir": str(tmp / "state"),
        "rules": [str(rules)],
        "http": {"host": "127.0.0.1", "port": port},
        "logging": {"format": "json", "level": "warning"},
        "sources": {
            "files": [
                {
                    "path": str(log_file),
                    "parser": "syslog",
                    "year": int(run.YEAR),
                    "start_at": "beginning",
                    "poll_interval": "50ms",
                }
            ]
        },
    }
    path = tmp / "tocsin.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def http_get(url: str) -> tuple[int, str]:
    """Return the status and body of a GET, or (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(exc)


def parse_metrics(text: str) -> Metrics:
    """Parse the Prometheus text format into {'name{labels}': value}."""
    samples: Metrics = {}
    for row in text.splitlines():
        if row and not row.startswith("#"):
            name, _, value = row.rpartition(" ")
            samples[name] = float(value)
    return samples


def status_kib(pid: int, key: str) -> int:
    """Return one KiB figure (VmRSS, VmHWM) of /proc/PID/status, 0 once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for row in text.splitlines():
        if row.startswith(key + ":"):
            return int(row.split()[1])
    return 0


def committed_offset(db: Path) -> int:
    """Return the committed byte offset of the tailed file (-1 before the first commit)."""
    if not db.exists():
        return -1
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT MAX(byte_offset) FROM file_offsets").fetchone()
    except sqlite3.Error:
        return -1
    finally:
        conn.close()
    return -1 if row is None or row[0] is None else int(row[0])


def incident_work(db: Path) -> Counter[str]:
    """Return the occurrences counted per incident rule, and the resolved incidents."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT rule, SUM(count) FROM incidents GROUP BY rule").fetchall()
        work: Counter[str] = Counter({rule: int(total) for rule, total in rows})
        (resolved,) = conn.execute(
            "SELECT COUNT(*) FROM incidents WHERE state = 'resolved'"
        ).fetchone()
    finally:
        conn.close()
    if resolved:
        work["resolve"] = int(resolved)
    return work


def measure(binary: str, config: Path, log_file: Path, lines: int, timeout: float) -> Outcome:
    """Start the daemon, wait until every line is durably processed, stop it."""
    db = config.parent / "state" / "tocsin.db"
    port = yaml.safe_load(config.read_text())["http"]["port"]
    base = f"http://127.0.0.1:{port}"
    size = log_file.stat().st_size
    outcome = Outcome(lines)
    with LOG.open("wb") as log:
        outcome.started = time.perf_counter()
        child = subprocess.Popen(
            [binary, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait(child, outcome, base=base, db=db, size=size, timeout=timeout)
            outcome.peak_kib = status_kib(child.pid, "VmHWM")
        finally:
            child.send_signal(signal.SIGTERM)
            stop_sent = time.perf_counter()
            try:
                outcome.exit_code = child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                outcome.failure = outcome.failure or f"no exit within {STOP_TIMEOUT:.0f} s"
            outcome.stopped = time.perf_counter() - stop_sent
    return outcome


def _wait(
    child: subprocess.Popen[bytes],
    outcome: Outcome,
    *,
    base: str,
    db: Path,
    size: int,
    timeout: float,
) -> None:
    """Poll /healthz, then /metrics and the database, filling in `outcome`'s times."""
    deadline = outcome.started + timeout
    events_key = 'tocsin_events_received_total{source="log"}'
    next_rss = 0.25
    while time.perf_counter() < deadline:
        if child.poll() is not None:
            outcome.failure = f"the daemon exited early with {child.returncode}"
            return
        now = time.perf_counter()
        if not outcome.ready:
            if http_get(f"{base}/healthz")[0] == 200:
                outcome.ready = now
                outcome.rss.append((0.0, status_kib(child.pid, "VmRSS")))  # startup done
            else:
                time.sleep(0.02)
            continue
        status, body = http_get(f"{base}/metrics")
        if status == 200:
            outcome.metrics = parse_metrics(body)
            share = outcome.metrics.get(events_key, 0.0) / outcome.lines
            if share >= next_rss:  # one sample past each quarter of the file
                outcome.rss.append((share, status_kib(child.pid, "VmRSS")))
                while next_rss <= share:
                    next_rss += 0.25
            if share >= 1.0 and committed_offset(db) == size:
                outcome.done = time.perf_counter()
                if outcome.rss[-1][0] >= 1.0:  # the last quarter's sample was at the end too
                    outcome.rss.pop()
                outcome.rss.append((1.0, status_kib(child.pid, "VmRSS")))
                final = http_get(f"{base}/metrics")  # the commits that made the offset durable
                if final[0] == 200:
                    outcome.metrics = parse_metrics(final[1])
                return
        time.sleep(max(0.0, now + POLL_SECONDS - time.perf_counter()))
    outcome.failure = f"not done within {timeout:.0f} s"


def _mean(metrics: Metrics, name: str) -> float:
    """Return a histogram's mean (sum/count), 0 without observations."""
    count = metrics.get(f"{name}_count", 0.0)
    return metrics.get(f"{name}_sum", 0.0) / count if count else 0.0


def report(outcome: Outcome, verdict: str) -> None:
    """Print the figures of one run."""
    m = outcome.metrics
    startup = outcome.ready - outcome.started
    seconds = outcome.done - outcome.ready
    total = outcome.done - outcome.started
    print(f"{'lines':<34} {outcome.lines:>12,}")
    print(f"{'seconds (healthz 200 to done)':<34} {seconds:>12.2f}")
    print(f"{'lines/s':<34} {outcome.lines / seconds:>12,.0f}")
    print(f"{'startup seconds (start to healthz)':<34} {startup:>12.2f}")
    print(f"{'lines/s including startup':<34} {outcome.lines / total:>12,.0f}")
    print(f"{'peak RSS MB (VmHWM)':<34} {outcome.peak_kib / 1024:>12.1f}")
    commits = m.get("tocsin_store_commits_total", 0.0)
    print(f"{'store commits':<34} {commits:>12,.0f}")
    print(f"{'lines per commit':<34} {outcome.lines / max(1.0, commits):>12,.0f}")
    for label, name in (
        ("event processing s, mean", "tocsin_event_processing_seconds"),
        ("store commit s, mean", "tocsin_store_commit_seconds"),
    ):
        count = m.get(f"{name}_count", 0.0)
        print(f"{label:<34} {_mean(m, name):>12.4f}  ({count:,.0f} observed)")
    print(f"{'shutdown seconds (SIGTERM to exit)':<34} {outcome.stopped:>12.2f}")
    print(f"{'exit code':<34} {outcome.exit_code!s:>12}")
    rss = ", ".join(f"{share:.0%} {kib / 1024:.1f}" for share, kib in outcome.rss)
    print(f"VmRSS MB by share of lines counted (at healthz, each quarter, done): {rss}")
    print(
        f"targets: >= {run.TARGET_LINES_PER_S:,} lines/s "
        f"[{'met' if outcome.lines / seconds >= run.TARGET_LINES_PER_S else 'NOT met'}], "
        f"peak RSS < {run.TARGET_RSS_MB:.0f} MB "
        f"[{'met' if outcome.peak_kib / 1024 < run.TARGET_RSS_MB else 'NOT met'}]"
    )
    odd = [f"{k} = {v:g}" for k, v in m.items() if k.startswith(WATCH) and v]
    print("counters that should be 0: " + ("; ".join(odd) if odd else "all 0"))
    print(f"work check (incident occurrences per rule, resolves): {verdict}")


def main() -> int:
    """Generate the file if needed, run the daemon over it, print the figures and the check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000, help="file size (1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (600 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, db)")
    parser.add_argument(
        "--rules",
        type=Path,
        default=run.BENCH / "rules",
        help="rule folder (default bench/rules; others, e.g. bench/rules_correlated after "
        "bench/correlation.py wrote it, skip the work check, which knows only bench/rules)",
    )
    args = parser.parse_args()

    binary = run._tocsin_bin()
    if binary is None:
        print("tocsin is not installed in this venv", file=sys.stderr)
        return 1
    log_file, expected = run.ensure_data(args.lines, args.seed)
    lines = sum(expected.values())
    kinds = {rule.id: rule.kind for rule in translate.load_rules()}

    tmp = Path(tempfile.mkdtemp(prefix="tocsin-bench-"))
    config = write_config(tmp, log_file, free_port(), args.rules.resolve())
    checked = args.rules.resolve() == (run.BENCH / "rules").resolve()
    print(
        f"file: {log_file.relative_to(run.REPO)} ({lines:,} lines, "
        f"{log_file.stat().st_size / 2**20:.0f} MB), {len(kinds)} rules, {os.cpu_count()} CPUs; "
        f"daemon log: {LOG.relative_to(run.REPO)}\n",
        flush=True,
    )
    try:
        outcome = measure(binary, config, log_file, lines, args.timeout)
        db = tmp / "state" / "tocsin.db"
        verdict = (
            run._verdict(incident_work(db), run.expected_work(expected, kinds))
            if outcome.done and db.exists() and checked
            else "ok (not checked: other rules)"
            if outcome.done and db.exists()
            else "not run"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp)
    if outcome.done:
        report(outcome, verdict)
    else:
        print(
            f"daemon benchmark failed: {outcome.failure} (daemon exit code "
            f"{outcome.exit_code}, {outcome.stopped:.2f} s after SIGTERM)"
        )
    daemon_log = LOG.read_text(errors="replace").strip().splitlines()
    if daemon_log:
        print(f"\ndaemon log ({len(daemon_log)} lines, last 15):")
        print("\n".join(daemon_log[-15:]))
    ok = bool(outcome.done) and outcome.exit_code == 0 and verdict.startswith("ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
