"""API tokens: the daemon's tokens file (who holds which role, by hash) and fresh tokens.

A line is `PRINCIPAL ROLE sha256:HEX`, HEX being the SHA-256 of the token, so the file never
holds a usable secret. A line with a bare token (the first format) still works, as role
operator with principal `token-N` (N: its line), and is reported as deprecated.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ApiToken",
    "Role",
    "TokenError",
    "new_token",
    "parse_tokens",
    "read_secret",
    "read_tokens",
    "token_digest",
    "token_line",
]

_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_LEGACY_NAME = re.compile(r"token-[0-9]+")
_HASH = re.compile(r"sha256:([0-9a-f]{64})")
_SHORTEST = 16


class TokenError(Exception):
    """A tokens file (or a token) cannot be used; the message says where and why."""


class Role(enum.IntEnum):
    """What a token may do; each role may do everything the ones below it may."""

    VIEWER = 1  # read incidents, timelines, on-call, silences, maintenance
    OPERATOR = 2  # change incidents, silences and maintenance windows
    ADMIN = 3  # also read the daemon's config

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> Role:
        """The role called `name` (viewer | operator | admin); ValueError otherwise."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; use viewer, operator or admin") from None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One known token: whose it is, its role, and the SHA-256 of the token itself."""

    principal: str
    role: Role
    digest: bytes
    legacy: bool = False  # written as a bare token: works, but should be replaced


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token, as the tokens file keeps it."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_line(principal: str, role: Role, token: str) -> str:
    """The tokens-file line that lets `token` in as `principal` with `role`."""
    if not _PRINCIPAL.fullmatch(principal) or _LEGACY_NAME.fullmatch(principal):
        raise TokenError(_principal_rule(principal))
    return f"{principal} {role} sha256:{token_digest(token).hex()}"


def _principal_rule(principal: str) -> str:
    return (
        f"principal {principal!r} must be 1-64 letters, digits or . _ @ + - "
        "(starting with a letter or digit), and not token-N (that names bare tokens)"
    )


def read_tokens(path: Path) -> list[ApiToken]:
    """Read the daemon's tokens file; TokenError names path:line for anything wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TokenError(f"http.tokens_file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise TokenError(f"cannot read http.tokens_file {path}: {exc.strerror}") from None
    return parse_tokens(text, str(path))


def parse_tokens(text: str, where: str) -> list[ApiToken]:
    """Parse tokens-file text (`where` names it in errors); blank and `#` lines are skipped."""
    tokens: list[ApiToken] = []
    seen: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        at = f"{where}:{number}"
        if len(fields) == 1:
            if len(fields[0]) < _SHORTEST:
                raise TokenError(f"{at}: a token must be at least {_SHORTEST} characters")
            token = ApiToken(f"token-{number}", Role.OPERATOR, token_digest(fields[0]), True)
        elif len(fields) == 3:
            principal, role_name, hashed = fields
            if not _PRINCIPAL.fullmatch(principal) or _LEGACY_NAME.fullmatch(principal):
                raise TokenError(f"{at}: {_principal_rule(principal)}")
            try:
                role = Role.named(role_name)
            except ValueError as exc:
                raise TokenError(f"{at}: {exc}") from None
            digest = _HASH.fullmatch(hashed)
            if digest is None:
                raise TokenError(
                    f"{at}: the third field must be sha256: and 64 lowercase hex digits "
                    "(`tocsin token new` prints the whole line)"
                )
            token = ApiToken(principal, role, bytes.fromhex(digest[1]))
        else:
            raise TokenError(
                f"{at}: write PRINCIPAL ROLE sha256:HEX (or, deprecated, a bare token), "
                f"not {len(fields)} fields"
            )
        if token.digest in seen:
            raise TokenError(f"{at}: the same token as line {seen[token.digest]}")
        seen[token.digest] = number
        tokens.append(token)
    return tokens


def read_secret(path: Path) -> str:
    """Read a client's token file: the token itself, on its first non-comment line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TokenError(f"cannot read token file {path}: {reason}") from None
    for line in text.splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            if len(token.split()) != 1:
                raise TokenError(
                    f"token file {path} must hold the token itself, not a tokens-file line"
                )
            return token
    raise TokenError(f"token file {path} holds no token")
