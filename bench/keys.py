"""Key-state memory: 1,000,000 live keys in one threshold rule, none expiring, none firing.

The file (bench/out/keys-N.log) holds N "Failed password ... from IP" lines, each from its own
IP (10.0.0.0/8 counted up), 1,000 per second, so all N fall inside one 1-hour window; then 4
more from the first IP. The rule is `threshold: {count: 5, within: 1h}`, keyed by IP, with
`max_keys: N`. The first IP is the least recently used key all along, so it is the one a key
limit would push out first: the final 4 lines make it fire (one `open` with count 5) only if
the rule still held all N keys.

Runs, each a fresh process under GNU time (peak RSS = its own high-water mark):
- `tocsin replay` with that rule;
- the 0-key baseline: the same file and rule with a message regex that no line matches
  (same parsing, prefilter and output; no captures, keys or state);
- in-process (`--in-process`, started by this script as its own child): the engine driven
  as `tocsin replay` drives it, then len(states), evictions, VmRSS before/after and a
  per-object size breakdown of the key state;
- the same in-process run with `within: 1s`, where keys go idle about 1 s after they arrive
  and the per-batch sweep should drop them: how many does it keep?
- with `--evict`, in-process with `max_keys: 100000` (the default): 900,000 evictions, timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import run

OUT = run.OUT
TARGET_MB = 400.0
RULE_ID = "ssh-keys"
PER_SECOND = 1000  # lines per stamp second
EXTRA = 4  # final lines from the first IP: 1 + 4 = count 5


def ip_of(i: int) -> str:
    """The i-th distinct address, 10.0.0.1 onwards."""
    i += 1
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def stamp(second: int) -> str:
    """'Nov 25 06:MM:SS'-style stamp, `second` seconds after 06:00:00."""
    h, rest = divmod(6 * 3600 + second, 3600)
    m, s = divmod(rest, 60)
    return f"Nov 25 {h:02d}:{m:02d}:{s:02d}"


def lines(n: int) -> list[str]:
    """The file's lines, without newlines; then EXTRA from the first IP, 200 s after the last."""
    out = [
        f"{stamp(i // PER_SECOND)} bastion-01 sshd[4242]: Failed password for root from "
        f"{ip_of(i)} port {1024 + i % 60000} ssh2"
        for i in range(n)
    ]
    last = (n - 1) // PER_SECOND + 200
    out += [
        f"{stamp(last)} bastion-01 sshd[4242]: Failed password for root from {ip_of(0)} "
        f"port {2000 + j} ssh2"
        for j in range(EXTRA)
    ]
    return out


def data_file(n: int) -> Path:
    """Write bench/out/keys-N.log unless it exists."""
    path = OUT / f"keys-{n}.log"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines(n)) + "\n")
        tmp.replace(path)
    return path


def rules_file(
    n: int, *, within: str = "1h", matching: bool = True, max_keys: int | None = None
) -> Path:
    """Write the one-rule file; `matching=False` gives the 0-key baseline."""
    max_keys = max_keys or n
    regex = r"Failed password for (?:invalid user )?(?P<user>\S+) from (?P<ip>[0-9.]+) port \d+"
    if not matching:
        regex = regex.replace("Failed password", "Failed keyboard-interactive")
    name = f"keys-rule-{n}-{within}-{max_keys}-{'match' if matching else 'none'}"
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "keys.yaml"
    path.write_text(
        "rules:\n"
        f"  - id: {RULE_ID}\n"
        "    match:\n"
        "      program: sshd\n"
        f"      message: {{regex: '{regex}'}}\n"
        '    key: "{{ ip }}"\n'
        f"    threshold: {{count: 5, within: {within}}}\n"
        f"    max_keys: {max_keys}\n"
        '    actions: [{incident: {title: "SSH brute force from {{ ip }}", '
        "impact: medium, urgency: high}}]\n"
    )
    return folder


def vm(field: str) -> int:
    """A VmRSS/VmHWM-style field of this process, in KiB."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1])
    return 0


def in_process(n: int, within: str, max_keys: int | None = None) -> dict[str, object]:
    """Drive the engine as `tocsin replay` does; return what it held afterwards."""
    from datetime import UTC  # noqa: PLC0415 - only the child imports tocsin

    from tocsin.actions.registry import ACTION_KINDS  # noqa: PLC0415
    from tocsin.engine.clock import ManualClock  # noqa: PLC0415
    from tocsin.engine.pipeline import Engine  # noqa: PLC0415
    from tocsin.parsers import make_parser  # noqa: PLC0415
    from tocsin.records.incidents import IncidentBook  # noqa: PLC0415
    from tocsin.records.priority import PriorityMatrix  # noqa: PLC0415
    from tocsin.rules.loader import load_rules  # noqa: PLC0415

    ruleset = load_rules([rules_file(n, within=within, max_keys=max_keys)], kinds=ACTION_KINDS)
    assert not ruleset.errors, ruleset.errors
    clock = ManualClock()
    engine = Engine(
        rules=ruleset.rules,
        lists=ruleset.lists,
        book=IncidentBook(priorities=PriorityMatrix()),
        clock=clock,
        record_outputs=True,
    )
    parse = make_parser("syslog", origin="keys", year=2024, tz=UTC)
    gc.freeze()  # as the CLI does before a replay
    gc.set_threshold(50_000, 20, 100)
    gc.collect()
    before = vm("VmRSS")
    started = time.perf_counter()
    outputs: list[tuple[str, str, int]] = []
    evicted = expired = 0
    peak_keys = 0
    correlator = engine.correlators[RULE_ID]
    path = data_file(n)
    with path.open(encoding="utf-8") as handle:
        while True:
            chunk = [line.rstrip("\n") for _, line in zip(range(4096), handle, strict=False)]
            if not chunk:
                break
            read_at = time.time()
            events = [parse(line, read_at) for line in chunk]
            clock.advance_to(max(e.time for e in events))
            result = engine.process(events)
            evicted += sum(result.evicted.values())
            expired += result.expired
            peak_keys = max(peak_keys, len(correlator.states))
            outputs += [(o.op, o.key, o.count) for o in result.outputs or []]
    seconds = time.perf_counter() - started
    gc.collect()
    after = vm("VmRSS")
    states = correlator.states
    held = len(states)
    # What one key costs, object by object, from a sample of the state.
    sample = list(states.items())[: min(held, 10_000)]
    key_bytes = sum(sys.getsizeof(k) for k, _ in sample) / max(len(sample), 1)
    state_bytes = sum(sys.getsizeof(v) for _, v in sample) / max(len(sample), 1)
    float_bytes = sum(sum(sys.getsizeof(x) for x in v if x) for _, v in sample) / max(
        len(sample), 1
    )
    dict_bytes = sys.getsizeof(states) / max(held, 1)
    return {
        "keys_held": held,
        "peak_keys": peak_keys,
        "evicted": evicted,
        "expired_swept": expired,
        "outputs": outputs,
        "seconds": seconds,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "hwm_kib": vm("VmHWM"),
        "per_key_rss": (after - before) * 1024 / max(held, 1),
        "breakdown": {
            "key str": key_bytes,
            "window list": state_bytes,
            "floats in it": float_bytes,
            "dict slot": dict_bytes,
        },
    }


def replay(n: int, folder: Path, path: Path, label: str) -> tuple[run.Result, list[dict]]:
    """`tocsin replay` in its own process under GNU time; return the result and the rows."""
    binary = run._tocsin_bin()
    if binary is None:
        raise SystemExit("tocsin is not installed in this venv")
    cmd = [
        binary,
        "replay",
        "--rules",
        str(folder),
        "--parser",
        "syslog",
        "--year",
        "2024",
        "--timezone",
        "UTC",
        "--format",
        "jsonl",
        str(path),
    ]
    out = OUT / f"keys-{label}.jsonl"
    result = run.measure(label, n + EXTRA, cmd, out)
    rows = [json.loads(r) for r in out.read_text().splitlines()] if result.ok else []
    return result, rows


def child(n: int, within: str, max_keys: int | None = None) -> dict[str, object]:
    """Run the in-process mode in a fresh interpreter (its RSS is its own)."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--keys",
            str(n),
            "--child",
            within,
            "--max-keys",
            str(max_keys or n),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def main() -> int:
    """Generate, run, check, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct keys (1,000,000)")
    parser.add_argument("--runs", type=int, default=2, help="replay runs of each kind (2)")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process runs")
    parser.add_argument(
        "--evict",
        action="store_true",
        help="also run in-process with the default max_keys (100,000): 900,000 evictions",
    )
    parser.add_argument("--child", metavar="WITHIN", help=argparse.SUPPRESS)
    parser.add_argument("--max-keys", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.keys
    if args.child:
        print(json.dumps(in_process(n, args.child, args.max_keys)))
        return 0

    started = time.perf_counter()
    path = data_file(n)
    print(
        f"file: {path.relative_to(run.REPO)} ({n + EXTRA:,} lines, {n:,} distinct IPs, "
        f"{path.stat().st_size / 2**20:.0f} MB); load average {os.getloadavg()[0]:.2f}\n",
        flush=True,
    )
    full = rules_file(n)
    none = rules_file(n, matching=False)
    loaded: list[run.Result] = []
    empty: list[run.Result] = []
    ok = True
    for number in range(args.runs):
        for label, folder, bucket in ((f"{n:,} keys", full, loaded), ("0 keys", none, empty)):
            result, rows = replay(n, folder, path, "full" if bucket is loaded else "none")
            if not result.ok:
                print(f"{label}: {result.note}\n{result.stderr[-2000:]}", file=sys.stderr)
                return 1
            bucket.append(result)
            if bucket is loaded:
                want = [("open", ip_of(0), 5)]
                got = [(r["op"], r["key"], r["count"]) for r in rows]
                fine = got == want
            else:
                fine = rows == []
            ok &= fine
            print(
                f"  run {number + 1} {label:<15} {result.seconds:6.2f} s "
                f"{result.rate:>9,.0f} lines/s peak RSS {result.rss_mb:6.1f} MB  "
                f"output {'ok' if fine else 'WRONG'}",
                flush=True,
            )
    rss_full = min(r.rss_mb for r in loaded)
    rss_none = min(r.rss_mb for r in empty)
    per_key = (rss_full - rss_none) * 2**20 / n
    print(
        f"\ntocsin replay, peak RSS (min of {args.runs}): {rss_full:.1f} MB with {n:,} keys, "
        f"{rss_none:.1f} MB with 0 keys -> {per_key:,.0f} bytes per key"
    )
    print(
        f"target: <= {TARGET_MB:.0f} MB with {n:,} keys: "
        f"{'met' if max(r.rss_mb for r in loaded) <= TARGET_MB else 'NOT met'}"
    )
    print(
        f"all {n:,} keys held to the end (the first, least recently used IP fired with "
        f"count 5; the 0-key run printed nothing): {'ok' if ok else 'NO'}"
    )

    if not args.no_in_process:
        print("\nin-process (the engine as replay drives it, then its state inspected):")
        variants: list[tuple[str, int | None]] = [("1h", None), ("1s", None)]
        if args.evict:
            variants.append(("1h", 100_000))
        for within, cap in variants:
            got = child(n, within, cap)
            br = got["breakdown"]
            assert isinstance(br, dict)
            limit = f", max_keys {cap:,}" if cap else ""
            print(
                f"  within {within}{limit}: {got['keys_held']:,} keys held at the end "
                f"(peak {got['peak_keys']:,}), {got['evicted']:,} evicted, "
                f"{got['expired_swept']:,} swept as idle, outputs {got['outputs']}, "
                f"{got['seconds']:.1f} s"
            )
            print(
                f"    VmRSS {got['rss_before_kib'] / 1024:.1f} -> "
                f"{got['rss_after_kib'] / 1024:.1f} MB (peak {got['hwm_kib'] / 1024:.1f} MB): "
                f"{got['per_key_rss']:,.0f} bytes per key held; "
                "objects: " + ", ".join(f"{k} {v:.0f}" for k, v in br.items())
            )
            if within == "1h" and cap is None:
                ok &= got["keys_held"] == n and got["evicted"] == 0
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
