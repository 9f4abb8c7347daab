"""Reload helpers: what needs a restart, which files make up the config, its hash, and the
debounced watch on real files (inotify through watchdog)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tocsin.config import load_config
from tocsin.reloading import (
    ConfigFiles,
    ConfigWatcher,
    config_hash,
    kept_raw,
    raw_config,
    restart_needed,
)

CONFIG = """\
state_dir: state
rules: [rules]
http: {host: 127.0.0.1, port: 8465, tokens_file: tokens}
sources:
  files:
    - path: logs/*.log
incidents: incidents.yaml
"""


async def until(check: Callable[[], bool]) -> None:
    """Wait up to 5 s for `check` (the watch runs in a thread of its own); the asserts after
    it say what did not happen."""
    for _ in range(100):
        if check():
            return
        await asyncio.sleep(0.05)


def setup(root: Path) -> Path:
    """Write a config with a rules folder, a tokens file and an incidents file."""
    (root / "rules").mkdir()
    (root / "rules" / "a.yaml").write_text("rules: []\n")
    (root / "tokens").write_text("")
    (root / "incidents.yaml").write_text("users: []\n")
    (root / "tocsin.yaml").write_text(CONFIG)
    return root / "tocsin.yaml"


def test_restart_needed_names_the_changed_keys_a_reload_cannot_apply(tmp_path: Path) -> None:
    """Test the comparison: sources, correlation and http host/port need a restart; rules,
    incidents, the tokens file and the shutdown timeout do not."""
    path = setup(tmp_path)
    before = raw_config(path)
    path.write_text(
        CONFIG.replace("port: 8465", "port: 9000")
        .replace("logs/*.log", "logs/*.txt")
        .replace("rules: [rules]", "rules: [rules, more]")
        .replace("tokens_file: tokens", "tokens_file: other")
        + "correlation: {max_keys: 10}\nshutdown_timeout: 30\n"
    )
    assert restart_needed(before, raw_config(path)) == ["sources", "correlation", "http.port"]
    assert restart_needed(before, before) == []
    assert raw_config(tmp_path / "missing.yaml") == {}


def test_config_files_cover_rules_tokens_and_incidents(tmp_path: Path) -> None:
    """Test membership: the config's own files and any YAML file under a rules folder (a new
    rule file) count; the state folder and other files do not."""
    path = setup(tmp_path)
    files = ConfigFiles.of(load_config(path))
    assert path in files
    assert tmp_path / "tokens" in files
    assert tmp_path / "incidents.yaml" in files
    assert tmp_path / "rules" / "new.yml" in files
    assert tmp_path / "rules" / "sub" / "deep.yaml" in files
    assert tmp_path / "rules" / "notes.txt" not in files
    assert tmp_path / "state" / "tocsin.db" not in files
    assert tmp_path / "state" / "x.yaml" not in files
    assert "tocsin.yaml" not in files
    assert files.folders() == [tmp_path]


def test_the_hash_follows_the_bytes_of_every_file(tmp_path: Path) -> None:
    """Test that the hash changes with a rule file's bytes, and only then."""
    path = setup(tmp_path)
    first = config_hash(load_config(path))
    assert config_hash(load_config(path)) == first
    (tmp_path / "rules" / "a.yaml").write_text("rules: []  # edited\n")
    assert config_hash(load_config(path)) != first


async def test_the_watch_reloads_once_per_quiet_spell_and_only_for_config_files(
    tmp_path: Path,
) -> None:
    """Test the debounce on real files: five writes in quick succession are one reload after
    the quiet spell; writes to other files in the same folder are none."""
    path = setup(tmp_path)
    files = ConfigFiles.of(load_config(path))
    reloads: list[float] = []

    async def reload() -> None:
        reloads.append(asyncio.get_running_loop().time())

    watcher = ConfigWatcher(files.folders, files.__contains__, reload, debounce=0.3)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.3)  # the observer thread has started watching
        for n in range(5):
            (tmp_path / "rules" / "a.yaml").write_text(f"rules: []  # {n}\n")
            await asyncio.sleep(0.05)
        await until(lambda: bool(reloads))
        await asyncio.sleep(0.6)
        assert len(reloads) == 1
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "tocsin.db").write_text("x")
        (tmp_path / "notes.txt").write_text("x")
        await asyncio.sleep(0.8)
        assert len(reloads) == 1
        (tmp_path / "tokens").write_text("# rotated\n")
        await until(lambda: len(reloads) == 2)
        assert len(reloads) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_what_needs_a_restart_is_reported_until_the_restart(tmp_path: Path) -> None:
    """Test kept_raw: after a reload that could not apply `correlation` and `http.port`, the
    next reload still reports them; keys that did apply move on."""
    path = setup(tmp_path)
    running = raw_config(path)
    path.write_text(CONFIG.replace("8465", "9000") + "correlation: {max_keys: 10}\n")
    first = raw_config(path)
    assert restart_needed(running, first) == ["correlation", "http.port"]
    running = kept_raw(running, first)
    path.write_text(path.read_text() + "shutdown_timeout: 30\n")
    assert restart_needed(running, raw_config(path)) == ["correlation", "http.port"]
    assert kept_raw(running, raw_config(path))["shutdown_timeout"] == 30


def test_the_hash_is_the_same_for_the_same_config_in_another_folder(tmp_path: Path) -> None:
    """Test that the hash names files relative to the config's folder: two hosts with the
    same files, installed in different places, export the same hash."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert config_hash(load_config(setup(one))) == config_hash(load_config(setup(two)))


async def test_the_watch_takes_folders_a_reload_adds(tmp_path: Path) -> None:
    """Test that after a reload the watch asks again which folders hold the config, so a
    rules folder added by that reload is watched from then on."""
    (tmp_path / "etc").mkdir()
    path = setup(tmp_path / "etc")
    extra = tmp_path / "more-rules"
    extra.mkdir()
    folders = [path.parent]
    reloads: list[float] = []

    async def reload() -> None:
        reloads.append(asyncio.get_running_loop().time())
        folders.append(extra)  # this reload's config names another rules folder

    def relevant(changed: Path) -> bool:
        return changed.suffix == ".yaml"

    watcher = ConfigWatcher(lambda: folders, relevant, reload, debounce=0.2)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.3)
        (tmp_path / "etc" / "rules" / "a.yaml").write_text("rules: []  # edited\n")
        await until(lambda: bool(reloads))
        assert len(reloads) == 1
        (extra / "b.yaml").write_text("rules: []\n")
        await until(lambda: len(reloads) == 2)
        assert len(reloads) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
