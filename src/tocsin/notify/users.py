"""People who can be paged: a name that schedules and policies use, and their receivers."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tocsin.rules.schema import check_keys, expect_list, expect_map, expect_str, parse_named
from tocsin.yamlsrc import Mark, SourceError, did_you_mean, value_mark

__all__ = ["User", "parse_users"]

_KEYS = ("name", "full_name", "email", "receivers")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


@dataclass(frozen=True, slots=True)
class User:
    """A person; `receivers` are how to reach them, in the order given."""

    name: str
    full_name: str
    email: str = ""
    receivers: tuple[str, ...] = ()
    where: Mark | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, str]:
        """Return what templates may show of them (Notice.user)."""
        return {"name": self.name, "full_name": self.full_name, "email": self.email}


def parse_users(spec: Any, where: Mark, *, receivers: Collection[str]) -> dict[str, User]:
    """Parse a `users:` section (a list of people) into users by name; empty: none."""
    if spec is None:
        return {}

    def one(item: Any, at: Mark, number: int) -> User:
        return _user(item, at, number, receivers)

    return {u.name: u for u in parse_named(spec, where, "'users'", "user", one)}


def _user(spec: Any, where: Mark, number: int, receivers: Collection[str]) -> User:
    data = expect_map(spec, where, "a user")
    raw = data.get("name")
    label = f"user '{raw.strip()}'" if isinstance(raw, str) and raw.strip() else f"user {number}"

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"{label}: {message}")

    check_keys(data, _KEYS, "option", errors, required=("name",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "'name'", errors).strip()
    if not _NAME.fullmatch(name):
        raise errors(
            at("name"),
            f"'name' must be letters, digits and _.@- (starting with a letter or digit), "
            f"not {name!r}",
        )
    full_name = name
    if "full_name" in data:
        full_name = expect_str(data["full_name"], at("full_name"), "'full_name'", errors).strip()
        if not full_name:
            raise errors(at("full_name"), "'full_name' must not be empty (leave it out instead)")
    email = ""
    if "email" in data:
        email = expect_str(data["email"], at("email"), "'email'", errors).strip()
        if not _EMAIL.fullmatch(email):
            raise errors(
                at("email"), f"'email' must be an address like ops@example.com, not {email!r}"
            )
    found: list[str] = []
    if data.get("receivers") is not None:
        items = expect_list(data["receivers"], at("receivers"), "'receivers'", errors)
        for index, item in enumerate(items):
            item_at = value_mark(items, index, at("receivers"))
            receiver = expect_str(item, item_at, "a receiver", errors).strip()
            if receiver not in receivers:
                raise errors(
                    item_at,
                    f"unknown receiver '{receiver}'{did_you_mean(receiver, receivers)} "
                    "(receivers are defined under 'receivers')",
                )
            if receiver in found:
                raise errors(item_at, f"receiver '{receiver}' is listed twice")
            found.append(receiver)
    return User(name=name, full_name=full_name, email=email, receivers=tuple(found), where=where)
