"""Numeric OIDs to MIB names, INTEGER values to enumeration labels: fast enough for a trap storm.

The MIBs come compiled (by tocsin.snmp.mibcompile) into a compact JSON format of our own, one
file per MIB module, holding only what translation needs:

    {"format": 1, "module": "IF-MIB", "nodes": {
    "1.3.6.1.2.1.2.2.1.8": {"name": "ifOperStatus", "enums": {"1": "up", "2": "down"}},
    "1.3.6.1.6.3.1.1.5.3": {"name": "linkDown"}
    }}

`nodes` maps each OID that the module defines (object types, notification types, identities,
groups) to its name. `enums`, present only for INTEGER syntaxes with an enumeration (also one
that comes through a TEXTUAL-CONVENTION), maps each value, as a decimal string, to its label.
OIDs are numeric and canonical: no leading dot, no leading zeros. An SMIv1 TRAP-TYPE is the
node `enterprise.0.specific` (RFC 3584), which is how a v1 trap's snmpTrapOID reads. A file
that breaks any of this is refused whole, and a problem says why.

The modules shipped in `mibs/` next to this file are loaded first, then each folder given, in
order, each folder's files by name: on an OID defined twice, the one loaded last wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "SHIPPED", "MibIndex", "MibModule", "MibNode", "MibProblem", "Resolved"]

FORMAT = 1
SHIPPED = Path(__file__).with_name("mibs")

_OID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_VALUE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where an OID sits in the MIBs: the node that is its longest known prefix."""

    module: str  # "IF-MIB"
    name: str  # "ifOperStatus"
    instance: str  # the arcs after the node, "" if none: "3" for ifOperStatus.3
    node: str  # the node's numeric OID, "1.3.6.1.2.1.2.2.1.8"

    def __str__(self) -> str:
        """Return the net-snmp style text form, IF-MIB::ifOperStatus.3."""
        text = f"{self.module}::{self.name}"
        return f"{text}.{self.instance}" if self.instance else text


@dataclass(frozen=True, slots=True)
class MibProblem:
    """A MIB file that was not (or not fully) used, and why."""

    file: Path
    reason: str

    def __str__(self) -> str:
        """Return "file: reason" for logs and CLI output."""
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True, slots=True)
class MibNode:
    """A named OID and, for an enumerated INTEGER, its labels by value."""

    name: str
    enums: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MibModule:
    """One compiled MIB module: the nodes it defines, by numeric OID."""

    name: str
    nodes: Mapping[str, MibNode]

    def dumps(self) -> str:
        """Return the module in the compiled format, one node a line in OID order (diffable)."""
        lines = []
        for oid in sorted(self.nodes, key=lambda key: tuple(map(int, key.split(".")))):
            node = self.nodes[oid]
            entry: dict[str, Any] = {"name": node.name}
            if node.enums:
                entry["enums"] = {str(value): node.enums[value] for value in sorted(node.enums)}
            lines.append(f"{json.dumps(oid)}: {json.dumps(entry)}")
        body = "\n" + ",\n".join(lines) + "\n" if lines else ""
        return f'{{"format": {FORMAT}, "module": {json.dumps(self.name)}, "nodes": {{{body}}}}}\n'

    @classmethod
    def loads(cls, text: str) -> MibModule:
        """Parse the compiled format strictly; raise ValueError saying what is wrong."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, this tocsin reads {FORMAT}")
        unknown = sorted(set(doc) - {"format", "module", "nodes"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        module, nodes = doc.get("module"), doc.get("nodes")
        if not isinstance(module, str) or not module:
            raise ValueError('"module" must be a non-empty string')
        if not isinstance(nodes, dict):
            raise ValueError('"nodes" must be an object')
        return cls(module, {oid: _node(oid, entry) for oid, entry in nodes.items()})


def _node(oid: str, entry: Any) -> MibNode:
    """Check one entry of "nodes" and return it as a MibNode."""
    if not _OID.fullmatch(oid):
        raise ValueError(f"node {oid!r}: not a numeric OID")
    if not isinstance(entry, dict):
        raise ValueError(f"node {oid}: must be an object")
    unknown = sorted(set(entry) - {"name", "enums"})
    if unknown:
        raise ValueError(f"node {oid}: unknown key {unknown[0]!r}")
    name, enums = entry.get("name"), entry.get("enums", {})
    if not isinstance(name, str) or not name:
        raise ValueError(f'node {oid}: "name" must be a non-empty string')
    if not isinstance(enums, dict):
        raise ValueError(f'node {oid}: "enums" must be an object')
    for value, label in enums.items():
        if not _VALUE.fullmatch(value) or not isinstance(label, str) or not label:
            raise ValueError(f'node {oid}: "enums" must map integers to labels, not {value!r}')
    return MibNode(name, {int(value): label for value, label in enums.items()})


class MibIndex:
    """Every known MIB node by numeric OID, resolved by longest prefix behind a bounded cache."""

    def __init__(self, modules: Sequence[MibModule]) -> None:
        self._nodes: dict[str, tuple[str, str]] = {}  # oid -> (module, name)
        self._labels: dict[str, Mapping[int, str]] = {}
        for module in modules:
            for oid, node in module.nodes.items():
                self._nodes[oid] = (module.name, node.name)
                if node.enums:
                    self._labels[oid] = node.enums
                else:
                    self._labels.pop(oid, None)
        self._cache: dict[str, Resolved | None] = {}
        self._deepest = max((oid.count(".") for oid in self._nodes), default=0)

    @classmethod
    def load(cls, dirs: Sequence[Path] = ()) -> tuple[MibIndex, list[MibProblem]]:
        """Load the shipped modules, then each folder's *.json; report bad files, never raise."""
        modules: list[MibModule] = []
        problems: list[MibProblem] = []
        for folder in (SHIPPED, *dirs):
            if not folder.is_dir():
                problems.append(MibProblem(folder, "not a folder"))
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    modules.append(MibModule.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError) as exc:  # JSON and Unicode errors are ValueErrors
                    problems.append(MibProblem(path, str(exc)))
        return cls(modules), problems

    def resolve(self, oid: str) -> Resolved | None:
        """Return the node that is the longest prefix of `oid`, None when no MIB knows one."""
        try:
            return self._cache[oid]
        except KeyError:
            pass
        found = None
        prefix = oid
        extra = prefix.count(".") - self._deepest
        if extra > 0:  # no node is that deep: start the walk at the deepest any MIB defines
            prefix = prefix.rsplit(".", extra)[0]
        while True:
            known = self._nodes.get(prefix)
            if known is not None:
                found = Resolved(known[0], known[1], oid[len(prefix) + 1 :], prefix)
                break
            cut = prefix.rfind(".")
            if cut < 0:
                break
            prefix = prefix[:cut]
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[oid] = found
        return found

    def label(self, node: str, value: int) -> str | None:
        """Return the enumeration label of an INTEGER value of `node`, None if it has none."""
        labels = self._labels.get(node)
        return None if labels is None else labels.get(value)

    def __len__(self) -> int:
        """Return how many nodes are known."""
        return len(self._nodes)
