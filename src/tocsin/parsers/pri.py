"""Syslog PRI ("<34>") to level and facility, precomputed so a line costs one dict lookup."""

from __future__ import annotations

from tocsin.model import level_from_number

__all__ = ["FACILITIES", "PRI"]

# RFC 5424 section 6.2.1 facility codes 0..23, named as rsyslog and syslog.conf name them.
FACILITIES: tuple[str, ...] = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    *(f"local{n}" for n in range(8)),
)

# PRI digits as written (no leading zeros, 0..191) -> (level, facility).
PRI: dict[str, tuple[str, str]] = {
    str(pri): (level_from_number(pri & 7), FACILITIES[pri >> 3]) for pri in range(192)
}
