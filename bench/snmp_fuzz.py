"""Fuzz the whole trap intake, longer than CI does: millions of mutated real traps, zero crashes.

Seeds are real packets: a v2c linkDown, a v2c inform and a v1 trap encoded by pysnmp, and (when
net-snmp's snmptrap is installed) a v3 authPriv trap it sends to a socket of ours. Each packet
is one to three byte flips, insertions, deletions or truncations away from a seed, drawn from a
seeded generator, so a failure is repeatable. Every packet must become an event or a counted
drop (the counts must add up), and no exception may leave `TrapIntake.take`. Prints the packets
per second of the intake (decoding, access check, v3 USM, MIB mapping) on mutated input.

    .venv/bin/python bench/snmp_fuzz.py [--packets 2000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from snmpkit import fuzz_seeds, mutate
from tocsin.snmp.access import Community, CommunityAccess
from tocsin.snmp.events import TrapMapper
from tocsin.snmp.mibs import MibIndex
from tocsin.snmp.reasons import DUPLICATE_INFORM
from tocsin.snmp.settings import SnmpUser
from tocsin.sources.snmp import TrapIntake
from tocsin.sources.snmpv3 import V3Receiver

SENDER_ENGINE = bytes.fromhex("8000000001020304")
OUR_ENGINE = bytes.fromhex("80000000050a0b0c0d0e0f")
USER = SnmpUser(
    name="alice",
    auth="SHA-256",
    auth_key="alicepass1",
    priv="AES",
    priv_key="aliceprivk",
    engine_ids=(SENDER_ENGINE,),
    min_level="authPriv",
)
BATCH = 1000


def v3_seed() -> bytes | None:
    """A v3 authPriv linkDown as net-snmp's snmptrap sends it, or None without snmptrap."""
    if shutil.which("snmptrap") is None:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        port = sock.getsockname()[1]
        subprocess.run(
            ["snmptrap", "-M", "/nonexistent", "-m", "", "-v", "3",
             "-e", "0x" + SENDER_ENGINE.hex(), "-u", "alice", "-l", "authPriv",
             "-a", "SHA-256", "-A", "alicepass1", "-x", "AES",
             "-X", "aliceprivk", f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
             "1.3.6.1.2.1.2.2.1.1.3", "i", "3"],
            check=True, timeout=10,
        )  # fmt: skip
        return sock.recv(65535)


def main() -> None:
    """Run the fuzz and print the figures; exit 1 on any crash or unaccounted packet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    seeds = fuzz_seeds()
    v3 = v3_seed()
    if v3 is not None:
        seeds.append(v3)
    mibs, _ = MibIndex.load()
    intake = TrapIntake(
        access=CommunityAccess([Community(b"public")]),
        mapper=TrapMapper(mibs),
        v3=V3Receiver(users=[USER], engine_id=OUR_ENGINE, send=lambda data, to: None),
    )
    rng = random.Random(args.seed)
    events = crashes = 0
    spent = 0.0
    for start in range(0, args.packets, BATCH):
        count = min(BATCH, args.packets - start)
        batch = [
            (mutate(rng, rng.choice(seeds)), ("192.0.2.1", 40000 + i), 0) for i in range(count)
        ]
        began = time.perf_counter()
        try:
            events += len(intake.take(batch, float(start)).events)
        except Exception as error:  # noqa: BLE001 - what this bench looks for
            crashes += 1
            print(f"CRASH in batch at {start}: {error!r}", file=sys.stderr)
        spent += time.perf_counter() - began
    dropped = sum(intake.dropped.values())
    print(
        f"{args.packets:,} mutated packets from {len(seeds)} seeds "
        f"(v3 authPriv seed: {'yes' if v3 else 'no, snmptrap missing'}), seed {args.seed}\n"
        f"  events {events:,}, drops {dropped:,} "
        f"(duplicate informs {intake.dropped.get(DUPLICATE_INFORM, 0):,}), crashes {crashes}\n"
        f"  intake: {args.packets / spent:,.0f} packets/s "
        f"({spent / args.packets * 1e6:.1f} us each)\n"
        f"  drops by reason: {dict(intake.dropped.most_common())}"
    )
    if crashes or events + dropped != args.packets:
        print("FAIL: crashes, or packets neither turned into events nor counted", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
