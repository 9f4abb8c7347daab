"""Config reload: which config files a reload reads, what a running daemon cannot take without a
restart, the config hash, and a debounced watch of the files (watchdog's inotify observer).

The daemon itself swaps the parts (app.Daemon.reload); this module holds what it needs to
decide and to notice, so that it stays testable without a daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from tocsin.config import Config
from tocsin.rules.loader import find_rule_files
from tocsin.yamlsrc import SourceError, load_yaml_file

__all__ = [
    "RESTART_KEYS",
    "ConfigFiles",
    "ConfigWatcher",
    "ReloadOutcome",
    "config_files",
    "config_hash",
    "keep_running",
    "kept_raw",
    "raw_config",
    "restart_needed",
]

log = structlog.get_logger("tocsin")

# Top-level keys of the config file a running daemon keeps until it restarts: they shape the
# sources, the queue, the store and the engine's clocks. http host, port and open_reads too.
RESTART_KEYS = (
    "state_dir", "store", "pipeline", "logging", "sources", "correlation", "mqtt", "reload",
)  # fmt: skip
_HTTP_RESTART = ("host", "port", "open_reads")
# What a file's change looks like to inotify; opening and reading it (as a reload does) is not.
_CHANGES = frozenset({"created", "modified", "deleted", "moved", "closed"})


@dataclass(slots=True)
class ReloadOutcome:
    """How a reload went: the API's answer and the log line."""

    ok: bool
    trigger: str
    errors: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    rules: int = 0
    changed_rules: list[str] = field(default_factory=list)  # their correlation state started over
    config_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON view."""
        return {
            "status": "ok" if self.ok else "failed",
            "trigger": self.trigger,
            "errors": list(self.errors),
            "restart_needed": list(self.restart_needed),
            "rules": self.rules,
            "rules_restarted": list(self.changed_rules),
            "config_hash": self.config_hash,
        }


def raw_config(path: Path) -> Mapping[str, Any]:
    """The config file's top level as YAML data ({} if it cannot be read: nothing to compare)."""
    try:
        data = load_yaml_file(path)
    except (OSError, SourceError):
        return {}
    return data if isinstance(data, dict) else {}


def restart_needed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys whose change a reload cannot apply, comparing the files' YAML data."""
    changed = [key for key in RESTART_KEYS if old.get(key) != new.get(key)]
    old_http, new_http = old.get("http") or {}, new.get("http") or {}
    if isinstance(old_http, dict) and isinstance(new_http, dict):
        changed += [f"http.{k}" for k in _HTTP_RESTART if old_http.get(k) != new_http.get(k)]
    return changed


def keep_running(loaded: Config, running: Config) -> Config:
    """The new config with the running values of what needs a restart (RESTART_KEYS and
    http's host, port and open_reads, as Config fields)."""
    return dataclasses.replace(
        loaded,
        state_dir=running.state_dir,
        store_path=running.store_path,
        files=running.files,
        queue_events=running.queue_events,
        batch_lines=running.batch_lines,
        log_level=running.log_level,
        log_format=running.log_format,
        correlation=running.correlation,
        snmp=running.snmp,
        mqtt_brokers=running.mqtt_brokers,
        mqtt_subscriptions=running.mqtt_subscriptions,
        http=dataclasses.replace(
            loaded.http,
            host=running.http.host,
            port=running.http.port,
            open_reads=running.http.open_reads,
        ),
        watch=running.watch,
        watch_debounce=running.watch_debounce,
    )


def kept_raw(running: Mapping[str, Any], read: Mapping[str, Any]) -> dict[str, Any]:
    """The file's data as the daemon now runs it: what needs a restart keeps the running
    value, so the next reload still says a restart is due."""
    kept = {**read, **{k: running[k] for k in RESTART_KEYS if k in running}}
    for key in RESTART_KEYS:
        if key not in running:
            kept.pop(key, None)
    old_http, new_http = running.get("http") or {}, read.get("http") or {}
    if isinstance(old_http, dict) and isinstance(new_http, dict):
        http = {k: v for k, v in new_http.items() if k not in _HTTP_RESTART}
        http.update({k: old_http[k] for k in _HTTP_RESTART if k in old_http})
        kept["http"] = http
    return kept


def config_files(config: Config) -> list[Path]:
    """Every file a reload reads: the config, its rule files, the incidents, runbooks, muting
    and tokens files."""
    files = [config.path, *find_rule_files(config.rule_paths), *config.muting_paths]
    files += [p for p in (config.incidents_path, config.runbooks_path) if p is not None]
    if config.http.tokens_file is not None:
        files.append(config.http.tokens_file)
    return files


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """The files a config is made of, resolved once (a watch asks about every change)."""

    files: frozenset[Path]
    rule_folders: tuple[Path, ...]

    @classmethod
    def of(cls, config: Config) -> ConfigFiles:
        """Snapshot the config's files and its rule folders."""
        folders = tuple(p.resolve() for p in config.rule_paths if p.is_dir())
        return cls(frozenset(p.resolve() for p in config_files(config)), folders)

    def __contains__(self, path: object) -> bool:
        """Whether a change to `path` may change the config: one of its files, or a YAML
        file under a rules folder (a new rule file)."""
        if not isinstance(path, Path):
            return False
        path = path.resolve()
        if path in self.files:
            return True
        return (
            path.suffix in (".yaml", ".yml")
            and not path.stem.endswith(".test")  # rule tests: the loader skips them too
            and any(path.is_relative_to(folder) for folder in self.rule_folders)
        )

    def folders(self) -> list[Path]:
        """The folders to watch: the rule folders and those holding the files."""
        return _outermost([*self.rule_folders, *(f.parent for f in self.files)])


def config_hash(config: Config) -> str:
    """A SHA-256 over the names (relative to the config's folder) and bytes of every file the
    config is made of: equal on two hosts with the same config, wherever it is installed."""
    digest = hashlib.sha256()
    base = config.path.resolve().parent
    for path in sorted({p.resolve() for p in config_files(config)}):
        digest.update(os.path.relpath(path, base).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return digest.hexdigest()


class _Poke(FileSystemEventHandler):
    """Tells the loop (thread-safely) that a config file changed; judged in the observer's
    thread, so a busy database next to the config does not wake the loop at all."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        relevant: Callable[[Path], bool],
        poke: Callable[[Path], None],
    ) -> None:
        self._loop = loop
        self._relevant = relevant
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Forward changes (not opens and reads) of config files to the loop."""
        if event.event_type not in _CHANGES or event.is_directory:
            return
        for raw in (event.src_path, event.dest_path):
            if raw:
                path = Path(raw.decode() if isinstance(raw, bytes) else raw)
                if self._relevant(path):
                    self._loop.call_soon_threadsafe(self._poke, path)


class ConfigWatcher:
    """Watches the folders of the config files and calls `reload` once they have been quiet
    for `debounce` seconds: an editor's save, or a deploy writing many files, is one reload.
    Only files `relevant` says are part of the config count (the state folder may be near);
    after each reload, folders the config names now are watched too."""

    def __init__(
        self,
        folders: Callable[[], Iterable[Path]],
        relevant: Callable[[Path], bool],
        reload: Callable[[], Awaitable[object]],
        *,
        debounce: float,
    ) -> None:
        self._folders = folders
        self._relevant = relevant
        self._reload = reload
        self._debounce = debounce
        self._changed = asyncio.Event()
        self._watched: set[Path] = set()

    def _poked(self, path: Path) -> None:
        log.debug("config_file_changed", path=str(path))
        self._changed.set()

    def _watch(self, observer: Any, handler: _Poke) -> None:
        for folder in self._folders():
            if folder.is_dir() and not any(folder.is_relative_to(w) for w in self._watched):
                observer.schedule(handler, str(folder), recursive=True)
                self._watched.add(folder)
                log.info("config_watch_started", folder=str(folder))

    async def run(self) -> None:
        """Watch until cancelled."""
        observer = Observer()
        handler = _Poke(asyncio.get_running_loop(), self._relevant, self._poked)
        self._watch(observer, handler)
        observer.daemon = True
        observer.start()
        try:
            while True:
                await self._changed.wait()
                while True:  # wait until it has been quiet for `debounce`
                    self._changed.clear()
                    try:
                        await asyncio.wait_for(self._changed.wait(), self._debounce)
                    except TimeoutError:
                        break
                await self._reload()
                self._watch(observer, handler)
        finally:
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)


def _outermost(folders: Iterable[Path]) -> list[Path]:
    """The folders not inside another one of them (a recursive watch covers those)."""
    found = sorted(set(folders))
    return [f for f in found if not any(f != o and f.is_relative_to(o) for o in found)]
