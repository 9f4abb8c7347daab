"""Correlation benchmark: the 50 bench rules with threshold/suppress on 18 of them, checked exactly.

`bench/rules_correlated/` is bench/rules/ with `threshold` or `suppress` (and keys that vary by
host, IP, user, interface, ...) on 18 rules, each of which also gets a `log` action so that every
act shows in the output (a suppress act on an open incident is otherwise an `update` like the
repeats it absorbs). This script writes that folder, runs `tocsin replay` over the bench syslog
file (interleaved with the plain 50 rules, for the overhead), and checks every output row
against a straightforward Python reference that matches the lines with the translated
whole-line regexes and runs the windows on the lines' own timestamps. SEC runs the same rules
as SingleWithThreshold / SingleWithSuppress twins; its windows run on arrival time, so its
counts are compared with the same reference with every event at one instant (valid while the
SEC run is shorter than the smallest window, which the script checks).
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import re2
import run
import translate
import yaml

BENCH = run.BENCH
OUT = run.OUT
RULES_DIR = BENCH / "rules_correlated"
SEC_CONF = OUT / "sec-correlated.conf"  # generated each run, next to the data (git-ignored)
YEAR = int(run.YEAR)

# rule id -> (key template or None to keep the rule's, correlation option)
CORRELATED: dict[str, tuple[str | None, dict[str, Any]]] = {
    # 25 % of the lines; 100 attackers with 1/rank weights on 8 servers: ~800 keys, a few very
    # busy (one event every few seconds), a long tail that never reaches 10 in 5 minutes.
    "ssh-failed-password": (
        "{{ event.host }}:{{ ip }}",
        {"threshold": {"count": 10, "within": "5m"}},
    ),
    "ssh-max-auth-attempts": (None, {"threshold": {"count": 3, "within": "10m"}}),
    "ssh-no-identification": (None, {"suppress": "1h"}),
    "sudo-auth-failure": (None, {"threshold": {"count": 2, "within": "1h"}}),
    "dovecot-auth-failed": (None, {"threshold": {"count": 5, "within": "10m"}}),
    # 1 %: 48 interfaces whose downs alternate with ups (link-up resolves link-down and starts
    # the key's suppression afresh, so the next down acts again).
    "link-down": (None, {"suppress": "10m"}),
    "bgp-neighbor-down": (None, {"threshold": {"count": 2, "within": "30m"}}),
    "kernel-oom-kill": (None, {"suppress": "1h"}),
    "disk-io-error": (None, {"threshold": {"count": 3, "within": "30m"}}),
    "segfault": (None, {"suppress": "30m"}),
    "systemd-unit-failed": (None, {"suppress": "1h"}),
    "postfix-reject": (None, {"threshold": {"count": 2, "within": "1h"}}),
    "postfix-sasl-failed": (None, {"threshold": {"count": 3, "within": "1h"}}),
    "nginx-upstream-timeout": (
        "{{ event.host }}:{{ upstream }}",
        {"threshold": {"count": 3, "within": "30m"}},
    ),
    "haproxy-server-down": (None, {"suppress": "15m"}),
    "mysql-too-many-connections": (None, {"suppress": "5m"}),
    "java-out-of-memory": (None, {"suppress": "30m"}),
    # 8 %: 20 app instances x 4 error classes = 80 keys, ~1 event per 86 s each.
    "app-error": (
        "{{ event.host }}:{{ event.program }}:{{ error }}",
        {"threshold": {"count": 5, "within": "5m"}},
    ),
}
_UNITS = {"s": 1, "m": 60, "h": 3600}
_TEMPLATE = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_STAMP = re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d)")
_MONTHS = {name: n for n, name in enumerate(calendar.month_abbr) if name}


def seconds(duration: str) -> float:
    """Parse the durations used here ('30s', '5m', '1h')."""
    return float(duration[:-1]) * _UNITS[duration[-1]]


# ----------------------------------------------------------------------------- the rule folder


def correlated_files() -> dict[str, str]:
    """Return the rules_correlated/ files' text, derived from bench/rules/."""
    files: dict[str, str] = {}
    seen: set[str] = set()
    for path in sorted(translate.RULES_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        rules = []
        for raw in doc["rules"]:
            change = CORRELATED.get(raw["id"])
            if change is None:
                rules.append(raw)
                continue
            seen.add(raw["id"])
            key, option = change
            (action,) = raw["actions"]
            title = action["incident"]["title"]
            rule = {k: v for k, v in raw.items() if k != "actions"}
            if key is not None:
                rule["key"] = key
            rule.update(option)
            rule["actions"] = [action, {"log": title}]  # the log row marks each act
            rules.append(rule)
        out = {k: v for k, v in doc.items() if k != "rules"}
        out["rules"] = rules
        text = yaml.safe_dump(out, sort_keys=False, width=240, default_flow_style=None)
        files[path.name] = (
            f"# Generated by bench/correlation.py from bench/rules/{path.name}: do not edit.\n"
            + text
        )
    missing = set(CORRELATED) - seen
    if missing:
        raise SystemExit(f"CORRELATED names rules not in bench/rules: {sorted(missing)}")
    return files


def write_rules() -> None:
    """Write bench/rules_correlated/ when it is missing or stale."""
    files = correlated_files()
    RULES_DIR.mkdir(exist_ok=True)
    stale = [
        n
        for n, t in files.items()
        if not (RULES_DIR / n).exists() or (RULES_DIR / n).read_text() != t
    ]
    for name in stale:
        (RULES_DIR / name).write_text(files[name])
    extra = sorted(p.name for p in RULES_DIR.glob("*.yaml") if p.name not in files)
    if extra:
        raise SystemExit(f"unexpected files in {RULES_DIR}: {extra}")
    if stale:
        print(f"wrote {len(stale)} file(s) in {RULES_DIR.relative_to(run.REPO)}", flush=True)


# ------------------------------------------------------------------- rules for reference and SEC


@dataclass(slots=True)
class RefRule:
    """One rule as the reference and SEC see it."""

    bench: translate.BenchRule  # whole-line regex, SEC key and title
    key_parts: list[str]  # literal, group, literal, group, ... of the key template
    mode: str | None = None  # "threshold" | "suppress" | None
    count: int = 1
    within: float = 0.0
    log: bool = False

    @property
    def id(self) -> str:
        """Rule id."""
        return self.bench.id

    def key(self, groups: dict[str, str]) -> str:
        """Render the key from the regex's named groups."""
        parts = self.key_parts
        return "".join(part if i % 2 == 0 else groups[part] for i, part in enumerate(parts))


def load_ref_rules() -> list[RefRule]:
    """Load rules_correlated/ in name order, translated the way bench/translate.py does."""
    macros: dict[str, dict[str, Any]] = {}
    rules: list[RefRule] = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        macros.update(doc.get("macros") or {})
        for raw in doc["rules"]:
            kind, params = next(iter(raw["actions"][0].items()))
            key = raw.get("key", "")
            title = (params or {}).get("title", "")
            names = translate._template_names(key) | translate._template_names(title)
            regex = translate._line_regex(raw["id"], translate._conditions(raw, macros), names)
            target = params["rule"] if kind == "resolve" else raw["id"]
            bench = translate.BenchRule(
                id=raw["id"],
                description=raw.get("description", ""),
                regex=regex,
                kind=kind,
                target=target,
                key=translate._to_sec(key),
                title=translate._to_sec(title),
            )
            parts = _TEMPLATE.split(key)
            for i in range(1, len(parts), 2):
                parts[i] = translate._EVENT_GROUPS.get(parts[i], parts[i])
            rule = RefRule(bench, parts, log=any("log" in a for a in raw["actions"]))
            if "threshold" in raw:
                rule.mode = "threshold"
                rule.count = int(raw["threshold"]["count"])
                rule.within = seconds(raw["threshold"]["within"])
            elif "suppress" in raw:
                rule.mode = "suppress"
                rule.within = seconds(raw["suppress"])
            rules.append(rule)
    return rules


def sec_config(rules: list[RefRule]) -> str:
    """SEC twin: Single for plain rules, SingleWithThreshold/SingleWithSuppress, desc per key."""
    out = [
        "# Generated by bench/correlation.py from bench/rules_correlated/: do not edit.",
        "# One file, so DontCont makes the first match win across all rules (see bench/README).",
    ]
    for number, rule in enumerate(rules, 1):
        b = rule.bench
        action = translate._sec_action(b)
        out += ["", f"# {number}/{len(rules)} {b.id}: {b.description}"]
        if rule.mode == "threshold":
            out += [
                "type=SingleWithThreshold",
                "ptype=RegExp",
                f"pattern={b.regex}",
                f"desc={b.id} {b.key}",
                f"action={action}",
                f"window={int(rule.within)}",
                f"thresh={rule.count}",
            ]
        elif rule.mode == "suppress":
            out += [
                "type=SingleWithSuppress",
                "ptype=RegExp",
                f"pattern={b.regex}",
                f"desc={b.id} {b.key}",
                f"action={action}",
                f"window={int(rule.within)}",
            ]
        else:
            out += [
                "type=Single",
                "ptype=RegExp",
                f"pattern={b.regex}",
                f"desc={b.id}",
                f"action={action}",
            ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------- the reference

Row = tuple[float, str, str, str, str, int]  # (time, rule, action, op, key, count)


@dataclass(slots=True)
class Stats:
    """What the reference did for one correlated rule."""

    matches: int = 0
    acts: int = 0
    absorbed: int = 0  # repeats inside a window that acted
    absorbed_rows: int = 0  # ... of which counted into an open incident (an update row)
    keys: set[str] = field(default_factory=set)


class Reference:
    """The expected outputs, from scratch: incidents per (rule, key), windows per (rule, key)."""

    def __init__(self, rules: list[RefRule], *, collapse: bool = False) -> None:
        self.rules = {r.id: r for r in rules}
        self.collapse = collapse  # every event at one instant: SEC's view of a short run
        self.open: dict[tuple[str, str], int] = {}
        self.state: dict[tuple[str, str], Any] = {}
        self.stats = {r.id: Stats() for r in rules if r.mode}
        self.out: list[Row] = []
        self.acts: Counter[tuple[str, str]] = Counter()  # (op, rule) of the acted incident rows

    def _incident(self, rule: RefRule, key: str, t: float, count: int, *, act: bool) -> None:
        fp = (rule.id, key)
        have = self.open.get(fp)
        op = "open" if have is None else "update"
        self.open[fp] = now = (have or 0) + count
        self.out.append((t, rule.id, "incident", op, key, now))
        if act:
            self.acts[op, rule.id] += 1

    def _act(self, rule: RefRule, key: str, t: float, count: int) -> None:
        self._incident(rule, key, t, count, act=True)
        if rule.log:
            self.out.append((t, rule.id, "log", "info", key, 0))

    def _absorb(self, rule: RefRule, key: str, t: float, stats: Stats) -> None:
        stats.absorbed += 1
        if (rule.id, key) in self.open:
            stats.absorbed_rows += 1
            self._incident(rule, key, t, 1, act=False)

    def feed(self, t: float, rule: RefRule, key: str) -> None:
        """One line matched `rule` (first match) at time t with this key."""
        b = rule.bench
        if b.kind == "drop":
            self.out.append((t, b.id, "drop", "drop", "", 0))
            return
        if b.kind == "resolve":
            count = self.open.pop((b.target, key), None)
            if not self.collapse:  # tocsin starts the target's window afresh; SEC does not
                self.state.pop((b.target, key), None)
            if count is not None:
                self.out.append((t, b.id, "resolve", "resolve", key, count))
                self.acts["resolve", b.target] += 1
            return
        if rule.mode is None:
            self._act(rule, key, t, 1)
            return
        stats = self.stats[b.id]
        stats.matches += 1
        stats.keys.add(key)
        w = 0.0 if self.collapse else t
        sk = (b.id, key)
        if rule.mode == "suppress":
            # Act on the first event; absorb repeats up to `within` after it (inclusive).
            until = self.state.get(sk)
            if until is not None and w <= until:
                self._absorb(rule, key, t, stats)
                return
            self.state[sk] = w + rule.within
            stats.acts += 1
            self._act(rule, key, t, 1)
            return
        # Threshold: act on the count-th event within a sliding window whose edges are
        # inclusive; then absorb until the first counted event + within; then start afresh.
        st = self.state.get(sk)
        if st is None:
            st = self.state[sk] = [None, deque()]
        if st[0] is not None:
            if w <= st[0]:
                self._absorb(rule, key, t, stats)
                return
            st[0] = None
            st[1].clear()
        window: deque[float] = st[1]
        window.append(w)
        while window[0] < w - rule.within:
            window.popleft()
        if len(window) >= rule.count:
            n = len(window)
            st[0] = window[0] + rule.within
            window.clear()
            stats.acts += 1
            self._act(rule, key, t, n)


def matched_lines(path: Path, rules: list[RefRule]) -> Iterator[tuple[float, RefRule, str]]:
    """Yield (time, first matching rule, key) per matching line, using the whole-line regexes."""
    prefilter = re2.Set.SearchSet(re2.Options())
    for rule in rules:
        prefilter.Add(rule.bench.regex)
    prefilter.Compile()
    match = prefilter.Match
    searches = [re.compile(rule.bench.regex).search for rule in rules]
    stamps: dict[str, float] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            hits = match(line)
            if not hits:
                continue
            for index in sorted(hits):
                found = searches[index](line)
                if found is not None:
                    break
            else:
                continue
            stamp = line[:15]
            t = stamps.get(stamp)
            if t is None:
                m = _STAMP.match(stamp)
                assert m is not None, line
                mon, day, hh, mm, ss = m.groups()
                t = stamps[stamp] = float(
                    calendar.timegm((YEAR, _MONTHS[mon], int(day), int(hh), int(mm), int(ss)))
                )
            rule = rules[index]
            yield t, rule, rule.key(found.groupdict())


# ------------------------------------------------------------------------------------ the check

_iso_cache: dict[float, str] = {}


def _iso(t: float) -> str:
    text = _iso_cache.get(t)
    if text is None:
        if len(_iso_cache) > 100_000:
            _iso_cache.clear()
        text = _iso_cache[t] = datetime.fromtimestamp(t, tz=UTC).isoformat()
    return text


@dataclass(slots=True)
class Check:
    """The reference's verdict on one tocsin output file, and the SEC model's counts."""

    rows: int = 0
    mismatches: list[str] = field(default_factory=list)
    mismatch_count: int = 0
    ref: Reference | None = None
    sec_model: Reference | None = None
    matches: Counter[str] = field(default_factory=Counter)
    got_ops: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # rule, action, op


def check(path: Path, jsonl: Path, rules: list[RefRule]) -> Check:
    """Run the reference over the log, comparing its rows one by one with tocsin's output."""
    ref = Reference(rules)
    sec_model = Reference(rules, collapse=True)
    result = Check(ref=ref, sec_model=sec_model)
    with jsonl.open(encoding="utf-8") as got_lines:

        def compare(want: Row) -> None:
            got_text = got_lines.readline()
            result.rows += 1
            got: tuple[Any, ...] = ()
            if got_text:
                o = json.loads(got_text)
                got = (o["time"], o["rule"], o["action"], o["op"], o["key"], o["count"])
                result.got_ops[o["rule"], o["action"], o["op"]] += 1
            expected = (_iso(want[0]), *want[1:])
            if got != expected:
                result.mismatch_count += 1
                if len(result.mismatches) < 5:
                    result.mismatches.append(f"row {result.rows}: got {got} want {expected}")

        for t, rule, key in matched_lines(path, rules):
            result.matches[rule.id] += 1
            ref.feed(t, rule, key)
            sec_model.feed(t, rule, key)
            sec_model.out.clear()
            for row in ref.out:
                compare(row)
            ref.out.clear()
        for extra in got_lines:
            result.mismatch_count += 1
            if len(result.mismatches) < 5:
                result.mismatches.append(f"extra row from tocsin: {extra.strip()[:160]}")
    return result


# ---------------------------------------------------------------------------------- the running


def tocsin_cmd(rules_dir: Path, path: Path) -> list[str]:
    """The replay command line (UTC: the reference reads the stamps as UTC)."""
    binary = run._tocsin_bin()
    if binary is None:
        raise SystemExit("tocsin is not installed in this venv")
    return [
        binary,
        "replay",
        "--rules",
        str(rules_dir),
        "--parser",
        "syslog",
        "--year",
        run.YEAR,
        "--timezone",
        "UTC",
        "--format",
        "jsonl",
        str(path),
    ]


def sha256(path: Path) -> str:
    """Digest of a file, to compare repeated runs' outputs."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tocsin_summary(stderr: str) -> tuple[float, Counter[str]]:
    """tocsin's own lines/s (start-up excluded) and its matches per rule, from its stderr."""
    rate = 0.0
    matches: Counter[str] = Counter()
    in_matches = False
    for row in stderr.splitlines():
        if row.startswith("elapsed:"):
            rate = float(row.split("lines/s:")[1].replace(",", ""))
        elif row.startswith("matches per rule:"):
            in_matches = True
        elif in_matches and row.startswith("  ") and ": " in row:
            rule, n = row.strip().rsplit(": ", 1)
            matches[rule] = int(n)
        else:
            in_matches = False
    return rate, matches


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """'min / median / max' of a few runs."""
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def measure(tool: str, lines: int, cmd: list[str], stdout: Path) -> tuple[run.Result, float]:
    """As run.measure, plus the process's CPU seconds (user + system), both from GNU time.

    On this shared machine wall time depends on the neighbours; CPU time much less so.
    """
    if run.TIME is None:
        return run.measure(tool, lines, cmd, stdout), 0.0
    stderr_path = stdout.with_suffix(".stderr")
    times = stdout.with_suffix(".times")
    times.unlink(missing_ok=True)
    wrapped = [run.TIME, "-f", "%M %U %S", "-o", str(times), *cmd]
    with stdout.open("wb") as out, stderr_path.open("wb") as err:
        started = time.perf_counter()
        code = subprocess.run(wrapped, stdout=out, stderr=err, check=False).returncode
        seconds = time.perf_counter() - started
    fields = times.read_text().split()[-3:] if times.exists() else []
    peak_kib, cpu = (
        (int(fields[0]), float(fields[1]) + float(fields[2])) if len(fields) == 3 else (0, 0.0)
    )
    result = run.Result(
        tool,
        lines,
        seconds=seconds,
        rss_mb=peak_kib / 1024,
        ok=code == 0,
        note="" if code == 0 else f"exit {code}",
        stderr=stderr_path.read_text(errors="replace"),
    )
    return result, cpu


def run_sec(path: Path, lines: int) -> run.Result:
    """SEC over the file with the correlated twin config, from its start to EOF."""
    binary = shutil.which("sec")
    if binary is None:
        return run.Result("sec 2.9", lines, note="sec not installed (apt-get install -y sec)")
    cmd = [
        binary,
        f"--conf={SEC_CONF}",
        f"--input={path}",
        "--notail",
        "--nointevents",
        "--nointcontexts",
        "--debug=3",
    ]
    result, cpu = measure("sec 2.9", lines, cmd, OUT / "sec-correlated.out")
    result.note = f"{lines / cpu:,.0f} lines per CPU s" if cpu else ""
    if result.ok:
        for row in (OUT / "sec-correlated.out").read_text().splitlines():
            op, rule = row.split(" ", 2)[:2]
            result.actions[op, rule] += 1
    return result


def main() -> int:
    """Write the rules, run tocsin (and SEC), check the outputs, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="file size (1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument("--runs", type=int, default=3, help="tocsin runs of each rule set (3)")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain bench/rules runs")
    parser.add_argument("--no-sec", action="store_true", help="skip SEC")
    args = parser.parse_args()

    write_rules()
    rules = load_ref_rules()
    SEC_CONF.parent.mkdir(exist_ok=True)
    SEC_CONF.write_text(sec_config(rules))
    path, expected = run.ensure_data(args.lines, args.seed)
    lines = sum(expected.values())
    correlated = [r for r in rules if r.mode]
    print(
        f"file: {path.relative_to(run.REPO)} ({lines:,} lines), {len(rules)} rules, "
        f"{len(correlated)} with threshold/suppress ({RULES_DIR.relative_to(run.REPO)})\n",
        flush=True,
    )

    # Interleave the two rule sets so that a busy neighbour slows both alike.
    sets = [("correlated", RULES_DIR)] + ([] if args.no_plain else [("plain", translate.RULES_DIR)])
    results: dict[str, list[run.Result]] = {name: [] for name, _ in sets}
    inner: dict[str, list[float]] = {name: [] for name, _ in sets}
    per_cpu: dict[str, list[float]] = {name: [] for name, _ in sets}
    load_before = os.getloadavg()[0]
    first_out = OUT / "tocsin-correlated.jsonl"
    digests: list[str] = []
    for number in range(args.runs):
        for name, rules_dir in sets:
            out = (
                first_out
                if name == "correlated" and number == 0
                else OUT / f"tocsin-{name}-run.jsonl"
            )
            result, cpu = measure(f"tocsin {name}", lines, tocsin_cmd(rules_dir, path), out)
            print(
                f"  run {number + 1} {name:<10} {result.seconds:6.2f} s  "
                f"{result.rate:>9,.0f} lines/s  CPU {cpu:6.2f} s  {result.rss_mb:6.1f} MB  "
                f"{result.note}",
                flush=True,
            )
            if not result.ok:
                print(result.stderr[-3000:], file=sys.stderr)
                return 1
            results[name].append(result)
            inner[name].append(tocsin_summary(result.stderr)[0])
            per_cpu[name].append(lines / cpu if cpu else 0.0)
            if name == "correlated":
                digests.append(sha256(out))
    (OUT / "tocsin-correlated-run.jsonl").unlink(missing_ok=True)
    (OUT / "tocsin-plain-run.jsonl").unlink(missing_ok=True)

    sec = None if args.no_sec else run_sec(path, lines)

    print("\nchecking tocsin's output against the reference ...", flush=True)
    verdict = check(path, first_out, rules)
    ref, model = verdict.ref, verdict.sec_model
    assert ref is not None
    assert model is not None
    _, tocsin_matches = tocsin_summary(results["correlated"][0].stderr)

    # ------------------------------------------------------------------------------ figures
    print(
        f"\nload average (1 min) {load_before:.2f} before the tocsin runs, "
        f"{os.getloadavg()[0]:.2f} after everything, on {os.cpu_count()} CPUs"
    )
    print(
        f"\n{'rules':<12} {'runs':>4}  {'lines/s (min / median / max)':>30}  "
        f"{'engine lines/s':>14}  {'lines per CPU s':>15}  {'peak RSS MB (min / median / max)':>32}"
    )
    for name, _ in sets:
        rs = results[name]
        print(
            f"{name:<12} {len(rs):>4}  {spread([r.rate for r in rs]):>30}  "
            f"{statistics.median(inner[name]):>14,.0f}  {max(per_cpu[name]):>15,.0f}  "
            f"{spread([r.rss_mb for r in rs], '.1f'):>32}"
        )
    if sec is not None:
        if sec.ok:
            cpu_rate = sec.note.split()[0] if sec.note else "-"
            print(
                f"{'sec 2.9':<12} {1:>4}  {sec.rate:>30,.0f}  {'':>14}  {cpu_rate:>15}  "
                f"{sec.rss_mb:>32.1f}"
            )
        else:
            print(f"{'sec 2.9':<12}  {sec.note}")
    print(
        "(engine lines/s: tocsin's own figure, start-up excluded, median; lines per CPU s: best"
        " run, user + system time)"
    )
    best = statistics.median(r.rate for r in results["correlated"])
    print(
        f"\ntarget: tocsin with correlation >= {run.TARGET_LINES_PER_S:,} lines/s (median, "
        f"start-up included): {'met' if best >= run.TARGET_LINES_PER_S else 'NOT met'}"
    )
    if "plain" in results:
        plain = statistics.median(r.rate for r in results["plain"])
        print(f"correlation overhead vs the plain 50 rules: {plain / best - 1:+.1%} time per line")

    print(
        "\ncorrelated rules (reference on event time; tocsin from its output rows; SEC from"
        " its action lines, against the reference with all events at one instant):"
    )
    print(
        f"{'rule':<27} {'mode':<18} {'keys':>5} {'matches':>8} {'acts':>6} {'tocsin':>6} "
        f"{'absorbed':>8} {'rows':>7} {'tocsin':>7} {'SEC acts':>8} {'model':>6}"
    )
    total_ok = True
    for rule in rules:
        if not rule.mode:
            continue
        st = ref.stats[rule.id]
        got_acts = verdict.got_ops[rule.id, "log", "info"]
        got_inc = sum(verdict.got_ops[rule.id, "incident", op] for op in ("open", "update"))
        got_absorbed = got_inc - got_acts
        sec_acts = (
            sum(sec.actions[op, rule.id] for op in ("open", "update")) if sec and sec.ok else None
        )
        model_acts = model.stats[rule.id].acts
        mode = (
            f"{rule.count} in {rule.within:g}s"
            if rule.mode == "threshold"
            else f"suppress {rule.within:g}s"
        )
        print(
            f"{rule.id:<27} {mode:<18} {len(st.keys):>5} {st.matches:>8} {st.acts:>6} "
            f"{got_acts:>6} {st.absorbed:>8} {st.absorbed_rows:>7} {got_absorbed:>7} "
            f"{'-' if sec_acts is None else sec_acts:>8} {model_acts:>6}"
        )
        total_ok &= got_acts == st.acts and got_absorbed == st.absorbed_rows

    print("\nwork check:")
    gen_want = Counter({k: v for k, v in expected.items() if k != run.gen_syslog.NO_RULE})
    print(f"  reference matches vs generator counts   {run._verdict(verdict.matches, gen_want)}")
    print(f"  tocsin matches vs generator counts      {run._verdict(tocsin_matches, gen_want)}")
    rows_ok = verdict.mismatch_count == 0
    print(
        "  tocsin rows vs reference, row by row    "
        + (
            f"ok ({verdict.rows:,} rows: time, rule, action, op, key, count)"
            if rows_ok
            else f"MISMATCH ({verdict.mismatch_count:,} of {verdict.rows:,} rows)"
        )
    )
    for text in verdict.mismatches:
        print(f"    {text}")
    same = all(d == digests[0] for d in digests)
    print(
        f"  tocsin runs produce identical output    {'ok' if same else 'NO'} ({len(digests)} runs)"
    )
    print(f"  per-rule acts/absorbs (table)           {'ok' if total_ok else 'MISMATCH'}")
    sec_ok = True
    if sec is not None and sec.ok:
        smallest = min(r.within for r in correlated)
        want = Counter(model.acts)
        got = Counter(sec.actions)
        if sec.seconds < smallest:
            sec_verdict = run._verdict(got, want)
            sec_ok = sec_verdict.startswith("ok")
            print(
                f"  SEC vs one-instant model                {sec_verdict}"
                f"  (run {sec.seconds:.0f} s < smallest window {smallest:.0f} s)"
            )
        else:
            print(
                f"  SEC vs one-instant model                not applicable: the run took "
                f"{sec.seconds:.0f} s, longer than the smallest window ({smallest:.0f} s)"
            )
        event_time = Counter(ref.acts)
        diff = sum(abs(got[k] - event_time[k]) for k in set(got) | set(event_time))
        print(
            f"  SEC vs event-time reference             differs by {diff:,} act lines "
            "(expected: SEC windows run on arrival time)"
        )
    return 0 if rows_ok and same and total_ok and sec_ok else 1


if __name__ == "__main__":
    sys.exit(main())
