"""`tocsin silence` and `tocsin maintenance`: the running daemon's API from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tocsin.client import ApiClient, ApiError, TargetError, find_target
from tocsin.config import load_config
from tocsin.tokens import TokenError, read_secret
from tocsin.yamlsrc import SourceError

__all__ = ["maintenance", "silence"]

EXIT_OK = 0
EXIT_INVALID = 1


def _client(args: argparse.Namespace) -> ApiClient | None:
    """The API client for --url or --config (with the config's first token), else as
    client.find_target says; None: reported."""
    token = args.token or os.environ.get("TOCSIN_TOKEN")
    if args.config is None:
        env = {**os.environ, "TOCSIN_TOKEN": token} if token else os.environ
        try:
            target = find_target(url=args.url, token_file=None, env=env)
        except TargetError as exc:
            print(exc, file=sys.stderr)
            return None
        return ApiClient(base_url=target.url, token=target.token)
    try:
        config = load_config(args.config)
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return None
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::", "") else config.http.host  # noqa: S104
    url = f"http://{host}:{config.http.port}"
    if token is None and config.http.tokens_file is not None:
        token = _first_token(config.http.tokens_file)
    return ApiClient(base_url=url, token=token)


def _first_token(path: Path) -> str | None:
    """The first token in a tokens file of bare tokens, if this user may read it (a file of
    hashes holds none to send)."""
    try:
        return read_secret(path)
    except TokenError:
        return None


def silence(args: argparse.Namespace) -> int:
    """List, add or expire silences."""
    client = _client(args)
    if client is None:
        return EXIT_INVALID
    try:
        if args.silence_command == "list":
            query = f"?state={args.state}" if args.state else ""
            _print_silences(client.call("GET", f"/api/v1/silences{query}")["silences"])
        elif args.silence_command == "add":
            body: dict[str, object] = {
                "matchers": args.matcher,
                "comment": args.comment,
            }
            if args.author:
                body["created_by"] = args.author
            if args.starts:
                body["starts_at"] = args.starts
            body["duration" if args.duration else "ends_at"] = args.duration or args.ends
            created = client.call("POST", "/api/v1/silences", body)
            print(f"{created['id']}  {created['state']} until {created['ends_at']}")
        else:
            found = [
                s["id"]
                for s in client.call("GET", "/api/v1/silences")["silences"]
                if s["id"].startswith(args.id)
            ]
            if len(found) != 1:
                problem = "no silence" if not found else f"{len(found)} silences"
                print(f"tocsin silence: {problem} with id {args.id}", file=sys.stderr)
                return EXIT_INVALID
            ended = client.call("DELETE", f"/api/v1/silences/{found[0]}")
            print(f"{ended['id']}  {ended['state']} at {ended['ends_at']}")
    except ApiError as exc:
        print(f"tocsin silence: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _print_silences(silences: list[dict[str, Any]]) -> None:
    print(f"{'ID':<8}  {'STATE':<7}  {'STARTS':<25}  {'ENDS':<25}  BY  COMMENT  MATCHERS")
    for s in silences:
        matchers = ", ".join(str(m) for m in s["matchers"])
        print(
            f"{str(s['id'])[:8]}  {s['state']!s:<7}  {s['starts_at']!s:<25}  {s['ends_at']!s:<25}  "
            f"{s['created_by']}  {s['comment']}  {matchers}"
        )


def maintenance(args: argparse.Namespace) -> int:
    """List, add or end one-off maintenance windows."""
    client = _client(args)
    if client is None:
        return EXIT_INVALID
    try:
        if args.maintenance_command == "list":
            for w in client.call("GET", "/api/v1/maintenance")["windows"]:
                state = w.get("state", "active" if w["active"] else "inactive")
                span = f"{w['start']} .. {w['end']}" if w["source"] == "api" else w["kind"]
                matchers = ", ".join(w["matchers"])
                print(f"{w['name']}  {w['source']}  {state}  {span}  {matchers}")
        elif args.maintenance_command == "add":
            body: dict[str, object] = {
                "name": args.name,
                "matchers": args.matcher,
                "comment": args.comment,
                "remind_before": args.remind_before,
            }
            if args.author:
                body["created_by"] = args.author
            if args.starts:
                body["start"] = args.starts
            body["duration" if args.duration else "end"] = args.duration or args.ends
            made = client.call("POST", "/api/v1/maintenance", body)
            print(f"{made['name']}  {made['state']} until {made['end']}")
        else:
            ended = client.call("DELETE", f"/api/v1/maintenance/{quote(args.name, safe='')}")
            print(f"{ended['name']}  {ended['state']} at {ended['end']}")
    except ApiError as exc:
        print(f"tocsin maintenance: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK
