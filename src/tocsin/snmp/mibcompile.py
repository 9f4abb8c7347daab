"""Compile MIB source files with pysmi into the compact JSON that tocsin.snmp.mibs loads.

pysmi parses the sources (SMIv1, SMIv2 and the usual vendor dialects) and writes its own JSON,
which is far more than translation needs; this keeps each node's name and enumeration labels,
following a syntax through its TEXTUAL-CONVENTION (in the module or the one it is imported from).
Imports are looked up among the given folders and then the shipped sources in mibs/src/.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysmi.codegen.jsondoc import JsonCodeGen
from pysmi.compiler import MibCompiler
from pysmi.parser import SmiStarParser
from pysmi.reader.callback import CallbackReader
from pysmi.writer.callback import CallbackWriter

from tocsin.files import replace_text
from tocsin.snmp.mibs import SHIPPED, MibModule, MibNode, MibProblem

__all__ = ["SHIPPED_SOURCES", "CompileReport", "compile_mibs"]

SHIPPED_SOURCES = SHIPPED / "src"

# The SMIv1 forms of MIB-II and of the SMI. pysmi maps imports from them to SNMPv2-SMI, SNMPv2-TC,
# SNMPv2-MIB and IF-MIB, and their nodes are older definitions of those modules' ones (RFC1213-MIB's
# ifOperStatus lacks dormant, notPresent, lowerLayerDown), so writing them would shadow the better.
_SUPERSEDED = frozenset(
    {"RFC1065-SMI", "RFC1155-SMI", "RFC-1212", "RFC-1215", "RFC1158-MIB", "RFC1213-MIB"}
)
_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z0-9_-]*)\s+DEFINITIONS\s*::=\s*BEGIN\b", re.MULTILINE)
_MAX_SOURCE = 10_000_000  # bytes; the largest real MIBs are about 1 MB
_MAX_TYPE_DEPTH = 8  # TEXTUAL-CONVENTIONs defined through others, and a guard against loops
_TYPE_CLASSES = ("textualconvention", "type")


@dataclass(frozen=True, slots=True)
class CompileReport:
    """What compile_mibs wrote, what it left out on purpose, and what failed."""

    compiled: tuple[str, ...]  # modules written to `out`, by name
    skipped: tuple[MibProblem, ...]  # SMIv1 MIB-II and SMI modules in the sources, not written
    problems: tuple[MibProblem, ...]


@dataclass(frozen=True, slots=True)
class _Source:
    """A MIB source file and its text."""

    path: Path
    text: str


def compile_mibs(sources: Sequence[Path], out: Path) -> CompileReport:
    """Compile every MIB module in the `sources` folders into `out`, one MODULE.json each.

    A later folder wins over an earlier one for a module found in both. Afterwards `out` holds
    exactly this run's modules: other *.json files there are removed. A file that cannot be
    read, parsed or compiled, a missing import, and a file that cannot be written are problems
    in the report; the other modules are compiled all the same.
    """
    problems: list[MibProblem] = []
    shipped = _scan([SHIPPED_SOURCES], problems)
    wanted = _scan(sources, problems)
    skipped = tuple(
        MibProblem(wanted.pop(name).path, f"{name} not written: pysmi maps it to SNMPv2 modules")
        for name in sorted(wanted.keys() & _SUPERSEDED)
    )
    docs = _Pysmi({**shipped, **wanted}).compile(wanted, problems) if wanted else {}
    types = _Types(docs)
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(wanted.keys() & docs.keys()):
            replace_text(out / f"{name}.json", _module(name, docs[name], types).dumps())
            written.append(name)
        for stale in out.glob("*.json"):
            if stale.stem not in written:
                stale.unlink()
    except OSError as exc:
        problems.append(MibProblem(Path(exc.filename or out), f"cannot write: {exc.strerror}"))
    return CompileReport(tuple(written), skipped, tuple(problems))


class _Pysmi:
    """One pysmi run over known sources, collecting its JSON documents and its failures."""

    def __init__(self, known: Mapping[str, _Source]) -> None:
        self._known = known
        self._docs: dict[str, Any] = {}  # module -> pysmi's JSON document of it

    def compile(self, wanted: Mapping[str, _Source], problems: list[MibProblem]) -> dict[str, Any]:
        """Compile `wanted` and their imports; add the failures of `wanted` to `problems`."""
        try:
            statuses = self._compiler().compile(*sorted(wanted), ignoreErrors=True)
        except Exception:  # noqa: BLE001 - some broken MIBs crash pysmi (AttributeError...)
            statuses = {}
            for name, source in sorted(wanted.items()):  # again one by one, to find which
                try:
                    statuses.update(self._compiler().compile(name, ignoreErrors=True))
                except Exception as exc:  # noqa: BLE001 - as above
                    problems.append(MibProblem(source.path, f"pysmi failed on it: {exc!r}"))
        sources = {source.path: source.text for source in self._known.values()}
        for name, status in sorted(statuses.items()):
            if status == "missing" and name not in JsonCodeGen.baseMibs:
                imports = re.compile(rf"\bFROM\s+{re.escape(name)}(?![\w-])")
                problems.extend(
                    MibProblem(path, f"imports {name}, which is in no MIB folder")
                    for path, text in sources.items()
                    if imports.search(text)
                )
            elif status not in ("compiled", "missing") and name in wanted:
                problems.append(MibProblem(wanted[name].path, _reason(status)))
        return self._docs

    def _compiler(self) -> Any:
        """Return a pysmi compiler that reads our sources and keeps its output here."""
        compiler = MibCompiler(_parser(), JsonCodeGen(), CallbackWriter(self._keep))
        compiler.add_sources(CallbackReader(self._read))
        return compiler

    def _read(self, name: str, _: object) -> str:
        """Give pysmi the text of a module, or "" (not found)."""
        source = self._known.get(name)
        return "" if source is None else source.text

    def _keep(self, name: str, text: str, _: object) -> None:
        """Take pysmi's JSON of a module it compiled."""
        self._docs[name] = json.loads(text)


@functools.cache
def _parser() -> Any:
    """Return pysmi's parser for SMIv1, SMIv2 and their dialects (built once: it takes a second)."""
    return SmiStarParser()


def _scan(folders: Sequence[Path], problems: list[MibProblem]) -> dict[str, _Source]:
    """Read the MIB files of `folders` and return them by the modules they define."""
    found: dict[str, _Source] = {}
    for folder in folders:
        try:
            paths = sorted(path for path in folder.iterdir() if not path.name.startswith("."))
        except OSError as exc:
            problems.append(MibProblem(folder, f"cannot list: {exc.strerror or exc}"))
            continue
        for path in paths:
            try:
                if not path.is_file():
                    continue
                if path.stat().st_size > _MAX_SOURCE:
                    problems.append(MibProblem(path, f"larger than {_MAX_SOURCE} bytes"))
                    continue
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError as exc:
                problems.append(MibProblem(path, f"cannot read: {exc.strerror or exc}"))
                continue
            names = dict.fromkeys(_HEADER.findall(text))  # once each, in order
            if not names:
                problems.append(
                    MibProblem(path, "no MIB module in it (NAME DEFINITIONS ::= BEGIN)")
                )
            for name in names:
                if name in found:
                    problems.append(
                        MibProblem(found[name].path, f"{name} is also in {path}, which is used")
                    )
                found[name] = _Source(path, text)
    return found


def _reason(status: Any) -> str:
    """Say why pysmi did not compile a module, with the line when it knows it."""
    error = getattr(status, "error", status)
    line = getattr(error, "lineno", None)
    message = str(getattr(error, "msg", error))
    return f"line {line}: {message}" if isinstance(line, int) else message


class _Types:
    """The named types (TEXTUAL-CONVENTIONs, type assignments) and imports of pysmi's documents."""

    def __init__(self, docs: Mapping[str, Any]) -> None:
        self._types: dict[str, dict[str, Any]] = {}  # module -> type name -> its syntax
        self._imports: dict[str, dict[str, str]] = {}  # module -> symbol -> module it is from
        for module, doc in docs.items():
            entries = [entry for entry in doc.values() if isinstance(entry, dict)]
            self._types[module] = {
                entry["name"]: entry.get("type")
                for entry in entries
                if entry.get("class") in _TYPE_CLASSES and isinstance(entry.get("name"), str)
            }
            self._imports[module] = {
                symbol: source
                for source, symbols in doc.get("imports", {}).items()
                if isinstance(symbols, list)
                for symbol in symbols
                if isinstance(symbol, str)
            }

    def enums(self, syntax: Any, module: str, depth: int = 0) -> dict[int, str]:
        """Return the enumeration of a syntax of `module`, following named types to theirs."""
        if not isinstance(syntax, dict) or depth > _MAX_TYPE_DEPTH:
            return {}
        constraints = syntax.get("constraints")
        if isinstance(constraints, dict) and isinstance(constraints.get("enumeration"), dict):
            return {
                value: label
                for label, value in constraints["enumeration"].items()
                if isinstance(value, int) and isinstance(label, str)
            }
        named = syntax.get("type")
        if not isinstance(named, str):
            return {}
        types = self._types.get(module, {})
        if named in types:
            return self.enums(types[named], module, depth + 1)
        source = self._imports.get(module, {}).get(named)
        return {} if source is None else self.enums(syntax, source, depth + 1)


def _module(name: str, doc: Mapping[str, Any], types: _Types) -> MibModule:
    """Keep, of pysmi's document of a module, every node's name and enumeration."""
    nodes = {
        entry["oid"]: MibNode(entry["name"], types.enums(entry.get("syntax"), name))
        for entry in doc.values()
        if isinstance(entry, dict)
        and isinstance(entry.get("oid"), str)
        and isinstance(entry.get("name"), str)
    }
    return MibModule(name, nodes)
