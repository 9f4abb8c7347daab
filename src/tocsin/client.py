"""A small client for the daemon's HTTP API, for the CLI (urllib, no asyncio), and where it
finds the daemon's URL and its token: flags, then environment, then a client config file."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tocsin.rules.schema import check_keys, expect_map, expect_str, parse_path
from tocsin.tokens import TokenError, read_secret
from tocsin.yamlsrc import Mark, SourceError, load_yaml_file, value_mark

__all__ = ["DEFAULT_URL", "ApiClient", "ApiError", "Target", "TargetError", "find_target"]

DEFAULT_URL = "http://127.0.0.1:8465"
_CLIENT_CONFIG = Path("~/.config/tocsin/client.yaml")


class ApiError(Exception):
    """The daemon said no, or could not be reached; the message is for the operator."""


class TargetError(Exception):
    """The URL, token file or client config cannot be used; the message says why."""


class ApiClient:
    """Talks JSON to one daemon; a token is sent when given."""

    def __init__(self, *, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON answer or raise ApiError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's daemon
            self.base_url + path, data=data, method=method
        )
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise ApiError(f"{method} {path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach tocsin at {self.base_url}: {reason}") from None


@dataclass(frozen=True, slots=True)
class Target:
    """Which daemon to talk to, and the token to send (None: none)."""

    url: str
    token: str | None


def find_target(*, url: str | None, token_file: Path | None, env: Mapping[str, str]) -> Target:
    """Resolve URL and token: flags, else TOCSIN_URL / TOCSIN_TOKEN, else the client config
    ($TOCSIN_CLIENT_CONFIG or ~/.config/tocsin/client.yaml: url, token_file), else defaults.

    TargetError says what is wrong with any of them.
    """
    try:
        config: dict[str, Any] = {}
        if (url is None and not env.get("TOCSIN_URL")) or (
            token_file is None and not env.get("TOCSIN_TOKEN")
        ):
            config = _client_config(env)
        found_url = url or env.get("TOCSIN_URL") or config.get("url") or DEFAULT_URL
        if not found_url.startswith(("http://", "https://")):
            raise TargetError(f"the API URL must start with http:// or https://: {found_url!r}")
        if token_file is not None:
            return Target(found_url, read_secret(token_file))
        if env.get("TOCSIN_TOKEN"):
            return Target(found_url, env["TOCSIN_TOKEN"])
        path = config.get("token_file")
        return Target(found_url, read_secret(path) if path is not None else None)
    except (SourceError, TokenError) as exc:
        raise TargetError(str(exc)) from None


def _client_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The client config file's settings; none when the default file does not exist."""
    named = env.get("TOCSIN_CLIENT_CONFIG")
    path = Path(named) if named else _CLIENT_CONFIG.expanduser()
    if not named and not path.exists():
        return {}
    data = expect_map(load_yaml_file(path), Mark(str(path), 1, 1), "the client config")
    check_keys(data, ("url", "token_file"), "client config key")
    settings: dict[str, Any] = {}
    if "url" in data:
        settings["url"] = expect_str(data["url"], value_mark(data, "url", data.mark), "url")
    if "token_file" in data:
        where = value_mark(data, "token_file", data.mark)
        settings["token_file"] = parse_path(path.parent, data["token_file"], where, "token_file")
    return settings
