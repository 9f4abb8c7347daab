"""The API tokens file, read by the daemon (to check tokens) and the CLI (to send one)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["TokenError", "read_tokens"]


class TokenError(Exception):
    """The tokens file cannot be used; the message says why."""


def read_tokens(path: Path) -> list[str]:
    """Return the tokens in file order (`#` comments, blank lines skipped); refuse short ones."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenError(f"cannot read http.tokens_file {path}: {exc.strerror}") from None
    tokens: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if len(token) < 16:
            raise TokenError(f"{path}:{number}: a token must be at least 16 characters")
        tokens.append(token)
    return tokens
