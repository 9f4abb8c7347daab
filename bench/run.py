"""End-to-end benchmark: tocsin replay vs SEC 2.9 vs bare-Python regex floors on one syslog file."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gen_syslog
import translate

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
TARGET_LINES_PER_S = 100_000
TARGET_RSS_MB = 100.0
YEAR = "2024"  # the year gen_syslog.START falls in
TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None  # GNU time (Debian: time)


@dataclass(slots=True)
class Result:
    """How one tool fared on the file."""

    tool: str
    lines: int
    seconds: float = 0.0
    rss_mb: float = 0.0
    ok: bool = False
    note: str = ""
    stderr: str = ""
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (op, rule) -> count

    @property
    def rate(self) -> float:
        """Return lines per second."""
        return self.lines / self.seconds if self.seconds else 0.0


def measure(tool: str, lines: int, cmd: list[str], stdout: Path) -> Result:
    """Run `cmd` with stdout to a file; return its wall time and its own peak RSS."""
    stderr_path = stdout.with_suffix(".stderr")
    rss_path = stdout.with_suffix(".maxrss")
    rss_path.unlink(missing_ok=True)
    # Not wait4()/RUSAGE_CHILDREN of our own child: Linux carries the parent's high-water RSS
    # across fork+exec into the child's ru_maxrss, so every tool would read >= this script's
    # ~22 MB. GNU time forks from a ~2 MB process; without it, sample the child's VmHWM.
    wrapped = [TIME, "-f", "%M", "-o", str(rss_path), *cmd] if TIME else cmd
    with stdout.open("wb") as out, stderr_path.open("wb") as err:
        started = time.perf_counter()
        try:
            child = subprocess.Popen(wrapped, stdout=out, stderr=err)
        except OSError as exc:
            return Result(tool, lines, note=f"could not start: {exc}")
        sampler = None if TIME else HighWater(child.pid)
        code = child.wait()
        seconds = time.perf_counter() - started
    if sampler is not None:
        peak_kib = sampler.stop()
    else:
        last = rss_path.read_text().split() if rss_path.exists() else []
        peak_kib = int(last[-1]) if last and last[-1].isdigit() else 0
    return Result(
        tool,
        lines,
        seconds=seconds,
        rss_mb=peak_kib / 1024,
        ok=code == 0,
        note="" if code == 0 else f"exit {code}",
        stderr=stderr_path.read_text(errors="replace"),
    )


class HighWater:
    """Samples a process's VmHWM from /proc every 20 ms (the fallback without GNU time)."""

    def __init__(self, pid: int) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self._peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmhwm-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Read VmHWM until stopped or the process is gone."""
        while not self._done.wait(0.02):
            try:
                text = self._status.read_text()
            except OSError:
                return
            for row in text.splitlines():
                if row.startswith("VmHWM:"):
                    self._peak = max(self._peak, int(row.split()[1]))

    def stop(self) -> int:
        """Stop sampling; return the highest VmHWM seen, in KiB."""
        self._done.set()
        self._thread.join()
        return self._peak


def _tocsin_bin() -> str | None:
    """Return the tocsin console script of this venv, or one on PATH."""
    beside = Path(sys.executable).parent / "tocsin"
    return str(beside) if beside.exists() else shutil.which("tocsin")


def run_tocsin(path: Path, lines: int) -> Result:
    """Replay the file through bench/rules with tocsin, JSON lines to a file."""
    binary = _tocsin_bin()
    if binary is None:
        return Result("tocsin replay", lines, note="tocsin not installed in this venv")
    cmd = [
        binary, "replay", "--rules", str(BENCH / "rules"), "--parser", "syslog",
        "--year", YEAR, "--format", "jsonl", str(path),
    ]  # fmt: skip
    result = measure("tocsin replay", lines, cmd, OUT / "tocsin.jsonl")
    if result.ok:
        for row in (OUT / "tocsin.jsonl").read_text().splitlines():
            action = json.loads(row)
            result.actions[action["op"], action["rule"]] += 1
    return result


def run_sec(path: Path, lines: int) -> Result:
    """Run SEC over the file once, from the start, exiting at EOF."""
    binary = shutil.which("sec")
    if binary is None:
        return Result("sec 2.9", lines, note="sec not installed (apt-get install -y sec)")
    cmd = [
        binary, f"--conf={translate.SEC_CONF}", f"--input={path}",
        "--notail",  # read the file from its start to EOF, then exit (--fromstart is moot then)
        "--nointevents", "--nointcontexts",  # no SEC_STARTUP/SEC_SHUTDOWN pseudo-events
        "--debug=3",  # errors only: a production setting, and it skips a tty test per action
    ]  # fmt: skip
    result = measure("sec 2.9", lines, cmd, OUT / "sec.out")
    if result.ok:
        for row in (OUT / "sec.out").read_text().splitlines():
            op, rule = row.split(" ", 2)[:2]
            result.actions[op, rule] += 1
    return result


def run_baseline(mode: str, label: str, path: Path, lines: int) -> tuple[Result, Counter[str]]:
    """Run one bare-Python baseline; return its result and its matches per rule."""
    cmd = [sys.executable, str(BENCH / "baseline.py"), mode, str(path)]
    result = measure(label, lines, cmd, OUT / f"baseline-{mode}.json")
    matches: Counter[str] = Counter()
    if result.ok:
        matches.update(json.loads((OUT / f"baseline-{mode}.json").read_text())["matches"])
    return result, matches


def ensure_data(lines: int, seed: int) -> tuple[Path, Counter[str]]:
    """Generate the syslog file unless it exists; return it and its expected matches per rule."""
    OUT.mkdir(exist_ok=True)
    path = gen_syslog.default_path(lines, seed)
    counts_file = gen_syslog.counts_path(path)
    if not (path.exists() and counts_file.exists()):
        print(f"generating {path.relative_to(REPO)} ...", flush=True)
        gen_syslog.write(path, lines, seed=seed)
    return path, Counter(json.loads(counts_file.read_text()))


def check_actions(result: Result, expected: Counter[str], kinds: dict[str, str]) -> str:
    """Compare a tool's actions with the generator's expected matches; return a verdict."""
    if not result.ok:
        return "not run"
    done: Counter[str] = Counter()
    for (op, rule), count in result.actions.items():
        done[op if op in ("resolve", "drop") else rule] += count
    # SEC's 'none' leaves no trace of drops to count.
    return _verdict(done, expected_work(expected, kinds, drops=bool(done["drop"])))


def expected_work(
    expected: Counter[str], kinds: dict[str, str], *, drops: bool = False
) -> Counter[str]:
    """Return the generator's counts as incident occurrences per rule, resolves (and drops)."""
    want: Counter[str] = Counter()
    for rule, count in expected.items():
        kind = kinds.get(rule)
        if kind == "incident":
            want[rule] += count
        elif kind == "resolve":  # every generated 'up' follows a 'down', so each one resolves
            want["resolve"] += count
        elif kind == "drop" and drops:
            want["drop"] += count
    return want


def _verdict(got: Counter[str], want: Counter[str]) -> str:
    """Return 'ok (N)' or the first few differences."""
    keys = sorted(set(got) | set(want))
    diff = [f"{key}: {got[key]} != {want[key]}" for key in keys if got[key] != want[key]]
    if not diff:
        return f"ok ({sum(want.values())} as expected)"
    return "MISMATCH " + "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")


def print_table(results: list[Result]) -> None:
    """Print the side-by-side table."""
    print(f"{'tool':<28} {'lines':>10} {'seconds':>8} {'lines/s':>10} {'peak RSS MB':>12}  note")
    for r in results:
        if r.ok:
            print(
                f"{r.tool:<28} {r.lines:>10,} {r.seconds:>8.2f} {r.rate:>10,.0f} "
                f"{r.rss_mb:>12.1f}  {r.note}"
            )
        else:
            print(f"{r.tool:<28} {r.lines:>10,} {'-':>8} {'-':>10} {'-':>12}  {r.note}")


def main() -> int:
    """Generate the file if needed, run every tool on it, print the table and the checks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000, help="file size (1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument("--no-sec", action="store_true", help="skip SEC")
    parser.add_argument("--no-baselines", action="store_true", help="skip the bare-Python floors")
    args = parser.parse_args()

    path, expected = ensure_data(args.lines, args.seed)
    lines = sum(expected.values())
    rules = translate.load_rules()
    kinds = {rule.id: rule.kind for rule in rules}
    if translate.SEC_CONF.read_text() != translate.sec_config(rules):
        print("warning: bench/sec/bench.conf is stale; run bench/translate.py", file=sys.stderr)

    print(f"file: {path.relative_to(REPO)} ({lines:,} lines, {path.stat().st_size / 2**20:.0f} MB),"
          f" {len(rules)} rules, {os.cpu_count()} CPUs\n", flush=True)  # fmt: skip
    results: list[Result] = []
    checks: list[tuple[str, str]] = []

    tocsin = run_tocsin(path, lines)
    results.append(tocsin)
    if not tocsin.ok:
        tocsin.note = f"tocsin replay failed: {tocsin.note}"
    checks.append((tocsin.tool, check_actions(tocsin, expected, kinds)))

    if not args.no_sec:
        sec = run_sec(path, lines)
        results.append(sec)
        checks.append((sec.tool, check_actions(sec, expected, kinds)))

    if not args.no_baselines:
        for mode, label in (("re", "python re, first match"), ("re2set", "python RE2 Set")):
            result, matches = run_baseline(mode, label, path, lines)
            results.append(result)
            want = Counter({k: v for k, v in expected.items() if k != gen_syslog.NO_RULE})
            checks.append((label, _verdict(matches, want) if result.ok else "not run"))

    print_table(results)
    if tocsin.ok:
        speed = "met" if tocsin.rate >= TARGET_LINES_PER_S else "NOT met"
        memory = "met" if tocsin.rss_mb < TARGET_RSS_MB else "NOT met"
    else:
        speed = memory = "not measured"
    print(
        f"\ntargets for tocsin: >= {TARGET_LINES_PER_S:,} lines/s [{speed}], "
        f"peak RSS < {TARGET_RSS_MB:.0f} MB [{memory}]"
    )
    print(
        "\nwork check against the generator's counts (tools: incident actions per rule, resolves"
        " and, where reported, drops; baselines: first matches per rule):"
    )
    for tool, verdict in checks:
        print(f"  {tool:<28} {verdict}")
    for result in results:
        if not result.ok and result.stderr:
            print(f"\n{result.tool} stderr (last lines):")
            print("\n".join(result.stderr.strip().splitlines()[-15:]))
    if tocsin.ok and tocsin.stderr.strip():
        print("\ntocsin replay summary (its stderr):")
        print(tocsin.stderr.rstrip())
    return 0 if tocsin.ok else 1


if __name__ == "__main__":
    sys.exit(main())
