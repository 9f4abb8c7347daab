"""YAML loading that remembers where every key and value came from, for file:line errors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Mark",
    "MarkedList",
    "MarkedMap",
    "SourceError",
    "did_you_mean",
    "key_mark",
    "load_yaml",
    "load_yaml_file",
    "value_mark",
]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in a source file, 1-based like editors count."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SourceError(Exception):
    """A problem in a config or rule file, printed as `file:line:col: sentence`."""

    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(f"{mark}: {message}")
        self.mark = mark
        self.message = message


class MarkedMap(dict[Any, Any]):
    """A YAML mapping that knows where it and each of its keys and values start."""

    mark: Mark
    key_marks: dict[Any, Mark]
    value_marks: dict[Any, Mark]


class MarkedList(list[Any]):
    """A YAML sequence that knows where it and each of its items start."""

    mark: Mark
    item_marks: list[Mark]


def _mark(loader: Any, node: yaml.Node) -> Mark:
    start = node.start_mark
    return Mark(loader.tocsin_file, start.line + 1, start.column + 1)


_MERGE = "tag:yaml.org,2002:merge"


def _construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[MarkedMap]:
    data = MarkedMap()
    data.mark = _mark(loader, node)
    data.key_marks = {}
    data.value_marks = {}
    yield data
    # `<<: *anchor` (or a list of them) is merged by hand, in the order YAML specifies: keys
    # written here win over merged ones, and an earlier merged mapping wins over a later one.
    explicit: set[Any] = set()
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        where = _mark(loader, key_node)
        try:
            hash(key)
        except TypeError:
            raise SourceError(where, "a mapping key must be a plain value") from None
        if key in explicit:
            first = data.key_marks[key]
            raise SourceError(where, f"duplicate key '{key}' (first given at line {first.line})")
        explicit.add(key)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_marks[key] = where
        data.value_marks[key] = _mark(loader, value_node)
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            continue
        merged = loader.construct_object(value_node, deep=True)
        for source in merged if isinstance(merged, list) else [merged]:
            if not isinstance(source, MarkedMap):
                where = _mark(loader, value_node)
                raise SourceError(where, "'<<' merges a mapping or a list of mappings")
            for key, value in source.items():
                if key not in data:
                    data[key] = value
                    data.key_marks[key] = source.key_marks[key]
                    data.value_marks[key] = source.value_marks[key]


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> Iterator[MarkedList]:
    data = MarkedList()
    data.mark = _mark(loader, node)
    data.item_marks = []
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_marks.append(_mark(loader, item))


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The C loader when available, building marked containers."""

    tocsin_file = "<string>"


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)

# YAML 1.1 reads on/off/yes/no as booleans ("id: off" would become False); keep YAML 1.2's
# true/false only, so operators' words stay words.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str, *, name: str) -> Any:
    """Parse one YAML document; syntax errors become SourceError with the file position."""
    loader = _Loader(text)
    loader.tocsin_file = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(name, mark.line + 1, mark.column + 1) if mark else Mark(name, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceError(where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise SourceError(Mark(name, 1, 1), f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path, *, name: str | None = None) -> Any:
    """Read and parse a YAML file; unreadable files and bad UTF-8 become SourceError too."""
    shown = name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(Mark(shown, 1, 1), f"not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise SourceError(Mark(shown, 1, 1), f"cannot read file: {exc.strerror}") from None
    return load_yaml(text, name=shown)


def key_mark(data: Any, key: Any, default: Mark) -> Mark:
    """Return where `key` is written in a marked mapping, else `default`."""
    if isinstance(data, MarkedMap):
        return data.key_marks.get(key, data.mark)
    return default


def value_mark(data: Any, key: Any, default: Mark) -> Mark:
    """Return where the value of `key` (or item `key` of a list) starts, else `default`."""
    if isinstance(data, MarkedMap):
        return data.value_marks.get(key, data.mark)
    if isinstance(data, MarkedList) and isinstance(key, int) and 0 <= key < len(data.item_marks):
        return data.item_marks[key]
    return default


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for a close choice, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
