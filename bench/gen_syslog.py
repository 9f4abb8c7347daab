"""Write a deterministic RFC 3164 syslog file (and its expected rule matches) for the benchmark."""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"
START = datetime(2024, 11, 25, 6, 0, 0)  # pass --year 2024 to tocsin replay
DAY = 86_400.0
NO_RULE = "-"  # counts key for lines that no rule should match

SERVERS = ("bastion-01", "web-01", "web-02", "web-03", "app-01", "app-02", "db-01", "mail-01")
APP_SERVERS = ("web-01", "web-02", "web-03", "app-01", "app-02")
ROUTERS = ("core-rtr1", "core-rtr2", "edge-sw1", "edge-sw2")
INTERFACES = (
    *(f"GigabitEthernet0/{n}" for n in range(8)),
    *(f"TenGigabitEthernet1/0/{n}" for n in range(1, 5)),
)
APPS = ("billing", "checkout", "inventory", "search-api")
VALID_USERS = ("root", "admin", "ubuntu", "deploy")
INVALID_USERS = ("test", "oracle", "git", "postgres", "user", "guest", "pi", "ftpuser", "support")
CRON_JOBS = (
    ("root", "command -v debian-sa1 > /dev/null && debian-sa1 1 1"),
    ("root", "cd / && run-parts --report /etc/cron.hourly"),
    ("root", "[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean"),
    ("www-data", "/usr/bin/php /var/www/app/artisan schedule:run >> /dev/null 2>&1"),
    ("deploy", "/opt/billing/bin/reconcile --quiet"),
)
APP_ERRORS = (
    ("PaymentGatewayTimeout", "upstream pay.example.net timed out after 30000 ms (order={n})"),
    ("SQLTransientConnectionException", "HikariPool-1 - Connection is not available (id={n})"),
    ("ValidationError", "field 'sku' is required (request={n})"),
    ("KeyError", "'customer_id' while handling request {n}"),
)
# Mix of line kinds, in percent (the rare kinds each hit one of the rarely matching rules).
MIX = {
    "ssh_fail": 25.0,
    "ssh_accept": 5.0,
    "link": 2.0,
    "cron": 20.0,
    "app_error": 8.0,
    "rare": 0.2,
    "filler": 39.8,
}


def _addresses(rng: random.Random, count: int) -> list[str]:
    """Return `count` distinct attacker addresses from the documentation ranges."""
    nets = ("192.0.2", "198.51.100", "203.0.113")
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen[f"{rng.choice(nets)}.{rng.randint(1, 254)}"] = None
    return list(seen)


class Generator:
    """Produces the lines; every random draw comes from one seeded RNG."""

    def __init__(self, *, seed: int) -> None:
        self.rng = random.Random(seed)
        self.attackers = _addresses(self.rng, 100)
        # A few noisy attackers and a long tail, as on any internet-facing bastion.
        self.attacker_weights = [1.0 / rank for rank in range(1, len(self.attackers) + 1)]
        self.link_up = dict.fromkeys(((r, i) for r in ROUTERS for i in INTERFACES), True)
        self.app_pids = {(h, a): self.rng.randint(900, 30_000) for h in APP_SERVERS for a in APPS}
        self.counts: Counter[str] = Counter()
        self.rare: list[Callable[[], tuple[str, str, str, str]]] = [
            self._oom,
            self._io_error,
            self._segfault,
            self._postfix_reject,
            self._sasl,
            self._nginx_timeout,
            self._mysql_connections,
            self._haproxy_down,
            self._sudo_failure,
            self._unit_failed,
            self._bgp_down,
            self._java_oom,
        ]
        self.filler: list[Callable[[], tuple[str, str, str]]] = [
            self._systemd,
            self._logind,
            self._ufw,
            self._postfix_connect,
            self._postfix_queue,
            self._postfix_sent,
            self._sshd_noise,
            self._app_info,
            self._cron_session,
            self._chrony,
        ]

    def _pid(self) -> int:
        """Return a plausible process id."""
        return self.rng.randint(300, 65_000)

    def _port(self) -> int:
        """Return an ephemeral port."""
        return self.rng.randint(1024, 65_535)

    def _server(self) -> str:
        """Return a server, mostly the bastion (which faces the internet)."""
        return "bastion-01" if self.rng.random() < 0.6 else self.rng.choice(SERVERS)

    def _attacker(self) -> str:
        """Return an attacker address, the noisy ones more often."""
        return self.rng.choices(self.attackers, self.attacker_weights)[0]

    def line(self, kind: str) -> tuple[str, str, str]:
        """Return (host, tag, message) of one line of the given kind, counting its rule."""
        rng = self.rng
        if kind == "ssh_fail":
            self.counts["ssh-failed-password"] += 1
            if rng.random() < 0.6:
                user = "invalid user " + rng.choice(INVALID_USERS)
            else:
                user = rng.choice(VALID_USERS)
            message = f"Failed password for {user} from {self._attacker()} port {self._port()} ssh2"
            return self._server(), f"sshd[{self._pid()}]", message
        if kind == "ssh_accept":
            self.counts[NO_RULE] += 1
            source = f"10.20.{rng.randint(0, 3)}.{rng.randint(2, 250)}"
            if rng.random() < 0.8:
                how, user, tail = (
                    "publickey",
                    "deploy",
                    ": ED25519 SHA256:3q2+7wAbqMgUdKzSg0Xb1v0Ytf8",
                )
            else:
                how, user, tail = "password", rng.choice(("alice", "bob", "carol")), ""
            message = f"Accepted {how} for {user} from {source} port {self._port()} ssh2{tail}"
            return self._server(), f"sshd[{self._pid()}]", message
        if kind == "link":
            router, ifname = pair = rng.choice(list(self.link_up))
            was_up = self.link_up[pair]
            self.link_up[pair] = not was_up
            self.counts["link-down" if was_up else "link-up"] += 1
            state = "down" if was_up else "up"
            return router, "%LINK-3-UPDOWN", f"Interface {ifname}, changed state to {state}"
        if kind == "cron":
            self.counts["cron-cmd-noise"] += 1
            user, command = rng.choice(CRON_JOBS)
            return rng.choice(SERVERS), f"CRON[{self._pid()}]", f"({user}) CMD ({command})"
        if kind == "app_error":
            self.counts["app-error"] += 1
            host, app = rng.choice(list(self.app_pids))
            error, detail = rng.choice(APP_ERRORS)
            thread = f"http-nio-8080-exec-{rng.randint(1, 64)}"
            message = f"ERROR [{thread}] {error}: {detail.format(n=rng.randint(1, 999_999))}"
            return host, f"{app}[{self.app_pids[host, app]}]", message
        if kind == "rare":
            rule, host, tag, message = rng.choice(self.rare)()
            self.counts[rule] += 1
            return host, tag, message
        self.counts[NO_RULE] += 1
        return rng.choice(self.filler)()

    # Rare lines: each returns (rule it must match, host, tag, message).
    def _oom(self) -> tuple[str, str, str, str]:
        """Return a kernel OOM kill."""
        comm = self.rng.choice(("java", "mysqld", "python3"))
        message = (
            f"Out of memory: Killed process {self._pid()} ({comm}) total-vm:8123456kB, "
            "anon-rss:4012345kB, file-rss:0kB, shmem-rss:0kB, UID:1001 pgtables:9000kB "
            "oom_score_adj:0"
        )
        return "kernel-oom-kill", self.rng.choice(SERVERS), "kernel", message

    def _io_error(self) -> tuple[str, str, str, str]:
        """Return a block device I/O error."""
        dev = self.rng.choice(("sda", "sdb", "nvme0n1"))
        sector = self.rng.randint(1, 10**9)
        message = f"blk_update_request: I/O error, dev {dev}, sector {sector} op 0x0:(READ)"
        return "disk-io-error", "db-01", "kernel", message

    def _segfault(self) -> tuple[str, str, str, str]:
        """Return a segfault report."""
        message = (
            f"php-fpm8.2[{self._pid()}]: segfault at 7f3a2c0010 ip 000055d1c2a3b4c5 "
            "sp 00007ffd1e2f3a40 error 4 in php-fpm8.2[55d1c2800000+3a0000]"
        )
        return "segfault", self.rng.choice(("web-01", "web-02", "web-03")), "kernel", message

    def _postfix_reject(self) -> tuple[str, str, str, str]:
        """Return a postfix RCPT reject."""
        ip = self._attacker()
        message = (
            f"NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <spam@example.com>: "
            "Relay access denied; from=<x@example.net> to=<spam@example.com> proto=ESMTP "
            "helo=<ylmf-pc>"
        )
        return "postfix-reject", "mail-01", f"postfix/smtpd[{self._pid()}]", message

    def _sasl(self) -> tuple[str, str, str, str]:
        """Return a postfix SASL failure."""
        message = (
            f"warning: unknown[{self._attacker()}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
        )
        return "postfix-sasl-failed", "mail-01", f"postfix/smtpd[{self._pid()}]", message

    def _nginx_timeout(self) -> tuple[str, str, str, str]:
        """Return an nginx upstream timeout."""
        upstream = self.rng.choice(("http://10.0.1.11:8080/api", "http://10.0.1.12:8080/api"))
        message = (
            f"2024/11/25 12:00:00 [error] 1234#1234: *{self.rng.randint(1, 10**6)} "
            "upstream timed out (110: Connection timed out) while reading response header "
            "from upstream, client: 198.51.100.20, server: shop.example.com, request: "
            f'"GET /api/cart HTTP/1.1", upstream: "{upstream}"'
        )
        return "nginx-upstream-timeout", self.rng.choice(("web-01", "web-02")), "nginx", message

    def _mysql_connections(self) -> tuple[str, str, str, str]:
        """Return a MySQL connection limit error."""
        message = "2024-11-25T12:00:00.000000Z 0 [ERROR] [MY-010000] [Server] Too many connections"
        return "mysql-too-many-connections", "db-01", "mysqld[1187]", message

    def _haproxy_down(self) -> tuple[str, str, str, str]:
        """Return an haproxy server-down line."""
        server = self.rng.choice(("app-01", "app-02"))
        message = (
            f"Server be_app/{server} is DOWN, reason: Layer4 timeout, check duration: 2001ms. "
            "1 active and 0 backup servers left. 0 sessions active, 0 requeued, "
            "0 remaining in queue."
        )
        return "haproxy-server-down", "web-01", f"haproxy[{self._pid()}]", message

    def _sudo_failure(self) -> tuple[str, str, str, str]:
        """Return a sudo authentication failure."""
        user = self.rng.choice(("alice", "bob"))
        message = (
            "pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 "
            f"tty=/dev/pts/0 ruser={user} rhost=  user={user}"
        )
        return "sudo-auth-failure", "bastion-01", "sudo", message

    def _unit_failed(self) -> tuple[str, str, str, str]:
        """Return a failed systemd unit."""
        unit = self.rng.choice(("billing-worker", "backup", "certbot"))
        message = f"{unit}.service: Failed with result 'exit-code'."
        return "systemd-unit-failed", self.rng.choice(SERVERS), "systemd[1]", message

    def _bgp_down(self) -> tuple[str, str, str, str]:
        """Return a BGP neighbor down (Cisco style)."""
        peer = self.rng.choice(("192.0.2.1", "192.0.2.5"))
        message = f"neighbor {peer} Down BGP Notification sent"
        return "bgp-neighbor-down", self.rng.choice(ROUTERS[:2]), "%BGP-5-ADJCHANGE", message

    def _java_oom(self) -> tuple[str, str, str, str]:
        """Return a JVM heap exhaustion from a Java service."""
        message = 'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space'
        return (
            "java-out-of-memory",
            self.rng.choice(("app-01", "app-02")),
            f"search-api[{self._pid()}]",
            message,
        )

    # Filler: returns (host, tag, message) that no rule matches.
    def _systemd(self) -> tuple[str, str, str]:
        """Return a routine systemd line."""
        n = self.rng.randint(1, 90_000)
        message = self.rng.choice(
            (
                f"Started session-{n}.scope - Session {n} of User deploy.",
                "Starting apt-daily.service - Daily apt download activities...",
                "Finished logrotate.service - Rotate log files.",
                f"session-{n}.scope: Deactivated successfully.",
                "phpsessionclean.service: Deactivated successfully.",
            )
        )
        return self.rng.choice(SERVERS), "systemd[1]", message

    def _logind(self) -> tuple[str, str, str]:
        """Return a systemd-logind session line."""
        n = self.rng.randint(1, 90_000)
        message = self.rng.choice((f"New session {n} of user deploy.", f"Removed session {n}."))
        return self._server(), "systemd-logind[612]", message

    def _ufw(self) -> tuple[str, str, str]:
        """Return a firewall drop logged by the kernel."""
        message = (
            f"[{self.rng.uniform(1e5, 9e5):.6f}] [UFW BLOCK] IN=eth0 OUT= "
            "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "
            f"SRC={self._attacker()} DST=10.0.0.5 LEN=40 TOS=0x00 PREC=0x00 TTL=241 ID=54321 "
            f"PROTO=TCP SPT={self._port()} DPT={self.rng.choice((23, 445, 3389, 8080))} "
            "WINDOW=1024 RES=0x00 SYN URGP=0"
        )
        return "bastion-01", "kernel", message

    def _postfix_connect(self) -> tuple[str, str, str]:
        """Return a postfix smtpd connect or disconnect."""
        ip = f"198.51.100.{self.rng.randint(1, 254)}"
        message = self.rng.choice(
            (
                f"connect from mail-{ip.replace('.', '-')}.example.org[{ip}]",
                f"disconnect from unknown[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
            )
        )
        return "mail-01", f"postfix/smtpd[{self._pid()}]", message

    def _queue_id(self) -> str:
        """Return a postfix queue id."""
        return f"{self.rng.getrandbits(40):010X}"

    def _postfix_queue(self) -> tuple[str, str, str]:
        """Return a postfix qmgr line."""
        message = (
            f"{self._queue_id()}: from=<noreply@example.com>, "
            f"size={self.rng.randint(900, 90_000)}, nrcpt=1 (queue active)"
        )
        return "mail-01", "postfix/qmgr[1021]", message

    def _postfix_sent(self) -> tuple[str, str, str]:
        """Return a postfix delivery line."""
        message = (
            f"{self._queue_id()}: to=<user{self.rng.randint(1, 999)}@example.org>, "
            "relay=mx.example.org[192.0.2.25]:25, delay=0.52, delays=0.01/0.01/0.2/0.3, "
            "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XyZ1234)"
        )
        return "mail-01", f"postfix/smtp[{self._pid()}]", message

    def _sshd_noise(self) -> tuple[str, str, str]:
        """Return sshd chatter that is no failed password."""
        ip, port = self._attacker(), self._port()
        message = self.rng.choice(
            (
                f"Connection closed by {ip} port {port} [preauth]",
                f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
                "pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
                f"Disconnected from authenticating user root {ip} port {port} [preauth]",
            )
        )
        return self._server(), f"sshd[{self._pid()}]", message

    def _app_info(self) -> tuple[str, str, str]:
        """Return an application INFO line."""
        host, app = self.rng.choice(list(self.app_pids))
        message = (
            f"INFO [http-nio-8080-exec-{self.rng.randint(1, 64)}] request completed "
            f"path=/api/v1/orders status=200 duration_ms={self.rng.randint(2, 900)}"
        )
        return host, f"{app}[{self.app_pids[host, app]}]", message

    def _cron_session(self) -> tuple[str, str, str]:
        """Return cron's PAM session line."""
        message = "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
        return self.rng.choice(SERVERS), f"CRON[{self._pid()}]", message

    def _chrony(self) -> tuple[str, str, str]:
        """Return a chronyd source change."""
        return (
            self.rng.choice(SERVERS),
            "chronyd[702]",
            "Selected source 192.0.2.123 (2.debian.pool.ntp.org)",
        )


def generate(lines: int, *, seed: int = 1) -> tuple[Iterator[str], Counter[str]]:
    """Return the lines (lazily) and the per-rule counts, complete once the lines are consumed."""
    gen = Generator(seed=seed)
    rng = gen.rng
    kinds = list(MIX)
    weights = list(MIX.values())
    mean_gap = DAY / lines

    def lines_iter() -> Iterator[str]:
        """Yield the lines with timestamps advancing by exponential gaps over about a day."""
        clock = 0.0
        last_second = -1
        stamp = ""
        for kind in rng.choices(kinds, weights, k=lines):
            clock += rng.expovariate(1.0 / mean_gap)
            second = int(clock)
            if second != last_second:
                last_second = second
                moment = START + timedelta(seconds=second)
                stamp = f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S}"
            host, tag, message = gen.line(kind)
            yield f"{stamp} {host} {tag}: {message}\n"

    return lines_iter(), gen.counts


def write(path: Path, lines: int, *, seed: int = 1) -> Counter[str]:
    """Write the log file and a `<path>.counts.json` of expected matches per rule."""
    path.parent.mkdir(parents=True, exist_ok=True)
    produced, counts = generate(lines, seed=seed)
    with path.open("w", encoding="utf-8") as out:
        out.writelines(produced)
    counts_path(path).write_text(json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
    return counts


def counts_path(path: Path) -> Path:
    """Return where the expected per-rule counts of a generated file live."""
    return path.with_name(path.name + ".counts.json")


def default_path(lines: int, seed: int) -> Path:
    """Return the default output file for a size and seed."""
    return OUT_DIR / f"syslog-{lines}-seed{seed}.log"


def main() -> int:
    """Parse arguments and write the file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000, help="number of lines (1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--out", type=Path, help="output file (bench/out/syslog-N-seedS.log)")
    args = parser.parse_args()
    path = args.out or default_path(args.lines, args.seed)
    counts = write(path, args.lines, seed=args.seed)
    print(f"wrote {args.lines} lines to {path}")
    for rule, count in counts.most_common():
        print(f"  {count:9d}  {rule}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
