"""Load rule files into a RuleSet: each rule validated on its own, bad ones reported and skipped."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tocsin.rules.correlation import CORRELATION_KEYS, ExpectSpec, GroupSpec, parse_correlation
from tocsin.rules.matchers import MatchCompiler
from tocsin.rules.schema import (
    check_keys,
    expect_bool,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
)
from tocsin.rules.templates import TemplateCompileError, compile_expression
from tocsin.rules.types import ActionKind, CompileContext, CompiledAction, Rule
from tocsin.yamlsrc import (
    Mark,
    MarkedList,
    MarkedMap,
    SourceError,
    did_you_mean,
    key_mark,
    load_yaml_file,
    value_mark,
)

__all__ = ["RuleSet", "display_path", "find_rule_files", "load_rules"]

_FILE_KEYS = ("lists", "macros", "rules")
_RULE_KEYS = (
    "id",
    "description",
    "tags",
    "enabled",
    "match",
    "when",
    "key",
    "continue",
    "actions",
    "max_keys",
    *CORRELATION_KEYS,
)
_LIST_REF = re.compile(r"lists\.([A-Za-z0-9_.-]+)")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(slots=True)
class RuleSet:
    """The compiled rules in load order, plus everything validation had to say."""

    rules: list[Rule] = field(default_factory=list)
    lists: dict[str, list[Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)
    warnings: list[SourceError] = field(default_factory=list)
    disabled: int = 0


def display_path(path: Path) -> str:
    """Show a path relative to the working directory when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def find_rule_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their *.yaml / *.yml files, in path order; rule tests
    (*.test.yaml, for `tocsin test`) may sit beside the rules and are left out."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in (".yaml", ".yml")
                    and not p.stem.endswith(".test")
                    and p.is_file()
                )
            )
        else:
            found.append(path)
    return found


@dataclass(slots=True)
class _RawFile:
    name: str
    data: MarkedMap


class _Loader:
    """One load: collects lists and macros from every file, then compiles the rules."""

    def __init__(self, kinds: Mapping[str, ActionKind]) -> None:
        self.kinds = kinds
        self.out = RuleSet()
        self.macros: dict[str, tuple[Any, Mark]] = {}
        self._defined_at: dict[tuple[str, str], Mark] = {}
        self._disabled: set[str] = set()
        self._silent: dict[str, Mark] = {}  # rules with `actions: []`: fine for group members

    def read(self, path: Path) -> _RawFile | None:
        name = display_path(path)
        self.out.files.append(name)
        try:
            data = load_yaml_file(path, name=name)
        except SourceError as exc:
            self.out.errors.append(exc)
            return None
        if data is None:
            return None
        try:
            data = expect_map(data, Mark(name, 1, 1), "a rule file")
            check_keys(data, _FILE_KEYS, "top-level key")
        except SourceError as exc:
            self.out.errors.append(exc)
            if not isinstance(data, MarkedMap):
                return None
        return _RawFile(name, data)

    def collect_named(self, raw: _RawFile) -> None:
        for section in ("lists", "macros"):
            if section not in raw.data:
                continue
            try:
                entries = expect_map(
                    raw.data[section], value_mark(raw.data, section, raw.data.mark), f"'{section}'"
                )
            except SourceError as exc:
                self.out.errors.append(exc)
                continue
            for name, value in entries.items():
                where = key_mark(entries, name, entries.mark)
                try:
                    self._define(section, name, value, where, value_mark(entries, name, where))
                except SourceError as exc:
                    self.out.errors.append(exc)

    def _define(self, section: str, name: Any, value: Any, where: Mark, vmark: Mark) -> None:
        kind = section[:-1]
        if not isinstance(name, str):
            raise SourceError(where, f"{kind} name {name!r} must be text")
        first = self._defined_at.get((section, name))
        if first is not None:
            raise SourceError(where, f"{kind} '{name}' is already defined at {first}")
        if section == "lists":
            items = expect_list(value, vmark, f"list '{name}'")
            if any(isinstance(i, dict | list) for i in items):
                raise SourceError(vmark, f"list '{name}' must hold plain values")
            self.out.lists[name] = list(items)
        else:
            self.macros[name] = (expect_map(value, vmark, f"macro '{name}'"), vmark)
        self._defined_at[(section, name)] = where

    def compile_rules(self, raw: _RawFile, seen: dict[str, Mark]) -> None:
        if "rules" not in raw.data:
            return
        where = value_mark(raw.data, "rules", raw.data.mark)
        try:
            items = expect_list(raw.data["rules"], where, "'rules'")
        except SourceError as exc:
            self.out.errors.append(exc)
            return
        for index, spec in enumerate(items):
            try:
                rule = self._rule(spec, value_mark(items, index, where), seen)
            except SourceError as exc:
                self.out.errors.append(exc)
                continue
            if rule is not None:
                self.out.rules.append(rule)

    def _rule(self, spec: Any, where: Mark, seen: dict[str, Mark]) -> Rule | None:
        data = expect_map(spec, where, "a rule")
        if "id" not in data:
            raise SourceError(where, "rule has no 'id'")
        rule_id = data["id"]
        id_mark = value_mark(data, "id", where)
        if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
            raise SourceError(
                id_mark,
                f"rule id {rule_id!r} must start with a letter or digit and hold only "
                "letters, digits, '_', '.' and '-'",
            )
        ctx = CompileContext(rule_id=rule_id)
        if rule_id in seen:
            raise ctx.error(id_mark, f"duplicate rule id (first defined at {seen[rule_id]})")
        seen[rule_id] = id_mark
        is_group = "group" in data
        required = (
            ("actions",) if is_group else ("match",) if "expect" in data else ("match", "actions")
        )
        check_keys(data, _RULE_KEYS, "rule option", ctx.error, required=required)
        if is_group:
            for option in ("match", "when", "key", "continue"):
                if option in data:
                    raise ctx.error(
                        key_mark(data, option, where),
                        f"a 'group' rule takes '{option}' from its member rules; remove it",
                    )
        if not expect_bool(
            data.get("enabled", True), value_mark(data, "enabled", where), "'enabled'", ctx.error
        ):
            self.out.disabled += 1
            self._disabled.add(rule_id)
            return None
        compiler = MatchCompiler(
            lists=self.out.lists,
            macros=self.macros,
            errors=ctx.error,
            warn=lambda m, text: self.out.warnings.append(ctx.error(m, text)),
        )
        compiled = (
            None if is_group else compiler.compile(data["match"], value_mark(data, "match", where))
        )
        when = None
        if "when" in data:
            wmark = value_mark(data, "when", where)
            try:
                when = compile_expression(expect_str(data["when"], wmark, "'when'", ctx.error))
            except TemplateCompileError as exc:
                raise ctx.error(wmark, f"'when' is not a valid expression: {exc}") from None
        key = (
            ctx.template(data["key"], value_mark(data, "key", where), "'key'")
            if "key" in data
            else None
        )
        tags = (
            expect_list(data.get("tags", []), value_mark(data, "tags", where), "'tags'", ctx.error)
            if "tags" in data
            else []
        )
        actions = self._actions(data, where, ctx) if "actions" in data else []
        correlation = parse_correlation(
            data, where, ctx, compiler, lambda items, mark: self._action_list(items, mark, ctx)
        )
        max_keys = (
            expect_int(
                data["max_keys"],
                value_mark(data, "max_keys", where),
                "'max_keys'",
                ctx.error,
                minimum=1,
            )
            if "max_keys" in data
            else None
        )
        if max_keys is not None and correlation.mode is None and correlation.flapping is None:
            raise ctx.error(
                key_mark(data, "max_keys", where),
                "'max_keys' bounds correlation state; this rule has no correlation option",
            )
        return Rule(
            id=rule_id,
            mark=where,
            matcher=compiled.matcher if compiled else None,
            prefilter=compiled.prefilter if compiled else None,
            actions=actions,
            description=expect_str(
                data.get("description", ""),
                value_mark(data, "description", where),
                "'description'",
                ctx.error,
            ),
            tags=tuple(str(t) for t in tags),
            when=when,
            key=key,
            continue_=expect_bool(
                data.get("continue", False),
                value_mark(data, "continue", where),
                "'continue'",
                ctx.error,
            ),
            correlation=correlation
            if correlation.mode or correlation.clear or correlation.flapping or correlation.storm
            else None,
            max_keys=max_keys,
            digest=self._digest(data),
        )

    def _digest(self, data: MarkedMap) -> str:
        """Hash a rule's definition with the lists and macros it names, to spot changes."""
        named: dict[str, Any] = {}
        pending = [data]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str):
                for name in (item, *_LIST_REF.findall(item)):
                    if name in self.out.lists:
                        named[f"list:{name}"] = self.out.lists[name]
                if item in self.macros and f"macro:{item}" not in named:
                    named[f"macro:{item}"] = self.macros[item][0]
                    pending.append(self.macros[item][0])  # and what the macro names in turn
        text = json.dumps([data, named], sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def _actions(self, data: MarkedMap, where: Mark, ctx: CompileContext) -> list[CompiledAction]:
        amark = value_mark(data, "actions", where)
        items = expect_list(data["actions"], amark, "'actions'", ctx.error)
        if not items and "group" not in data:
            # An expect rule acts through on_timeout; a group member may only feed its group.
            if "expect" not in data:
                self._silent[ctx.rule_id] = amark
            return []
        return self._action_list(items, amark, ctx)

    def _action_list(
        self, items: MarkedList, amark: Mark, ctx: CompileContext
    ) -> list[CompiledAction]:
        if not items:
            raise ctx.error(amark, "'actions' is empty; give at least one action (or 'drop')")
        actions: list[CompiledAction] = []
        for index, item in enumerate(items):
            imark = value_mark(items, index, amark)
            if isinstance(item, str):
                name, spec, smark = item, None, imark
            else:
                entry = expect_map(item, imark, "an action", ctx.error)
                if len(entry) != 1:
                    raise ctx.error(
                        imark, "each action is a mapping with exactly one key, its kind"
                    )
                name, spec = next(iter(entry.items()))
                smark = value_mark(entry, name, imark)
                imark = key_mark(entry, name, imark)
            kind = self.kinds.get(name) if isinstance(name, str) else None
            if kind is None:
                hint = did_you_mean(str(name), self.kinds)
                known = ", ".join(sorted(self.kinds))
                raise ctx.error(imark, f"unknown action '{name}'{hint}; known actions: {known}")
            actions.append(kind.compile(spec, smark, ctx))
        return actions

    def check_references(self, seen: dict[str, Mark]) -> None:
        """Drop rules that refer to rules that do not exist or cannot serve the purpose."""
        raising = {
            r.id
            for r in self.out.rules
            if any(a.kind == "incident" for a in (*r.actions, *_timer_actions(r)))
        }
        known = {r.id for r in self.out.rules}
        matching = {r.id for r in self.out.rules if r.matcher is not None}
        members: set[str] = set()
        for rule in self.out.rules:
            mode = rule.correlation.mode if rule.correlation else None
            if isinstance(mode, GroupSpec):
                members.update(mode.members)
        kept: list[Rule] = []
        for rule in self.out.rules:
            problem = None
            for kind, target in self._references(rule):
                if target in self._disabled:
                    problem = f"'{kind}' refers to rule '{target}', which is disabled"
                elif target in seen and target not in known:
                    problem = (
                        f"'{kind}' refers to rule '{target}', which is invalid "
                        f"(defined at {seen[target]})"
                    )
                elif target not in known:
                    hint = did_you_mean(target, known)
                    problem = f"'{kind}' refers to unknown rule '{target}'{hint}"
                elif kind == "group" and target not in matching:
                    problem = f"'group' lists rule '{target}', which is a group itself"
                elif kind != "group" and target not in raising:
                    problem = f"'{kind}' refers to rule '{target}', which raises no incidents"
            if problem is None and rule.id in self._silent and rule.id not in members:
                self.out.errors.append(
                    SourceError(
                        self._silent[rule.id],
                        f"rule '{rule.id}': 'actions' is empty; give at least one action "
                        "(or 'drop'), or list the rule in a group",
                    )
                )
                continue
            if problem is None:
                kept.append(rule)
            else:
                self.out.errors.append(SourceError(rule.mark, f"rule '{rule.id}': {problem}"))
        self.out.rules = kept

    @staticmethod
    def _references(rule: Rule) -> list[tuple[str, str]]:
        """(what refers, rule id) for every rule this one names."""
        refs = [(a.kind, t) for a in rule.actions for t in a.referenced_rules()]
        refs.extend((a.kind, t) for a in _timer_actions(rule) for t in a.referenced_rules())
        mode = rule.correlation.mode if rule.correlation else None
        if isinstance(mode, GroupSpec):
            refs.extend(("group", member) for member in mode.members)
        return refs


def _timer_actions(rule: Rule) -> tuple[CompiledAction, ...]:
    """Actions an expect rule runs when its follow-up arrives or times out."""
    mode = rule.correlation.mode if rule.correlation else None
    return (*mode.on_timeout, *mode.on_arrival) if isinstance(mode, ExpectSpec) else ()


def load_rules(paths: Sequence[Path], *, kinds: Mapping[str, ActionKind]) -> RuleSet:
    """Load every rule file under `paths`; never raises for content, only reports."""
    loader = _Loader(kinds)
    raws: list[_RawFile] = []
    for path in find_rule_files(paths):
        if not path.exists():
            loader.out.errors.append(SourceError(Mark(display_path(path), 1, 1), "no such file"))
            continue
        raw = loader.read(path)
        if raw is not None:
            raws.append(raw)
    for raw in raws:
        loader.collect_named(raw)
    seen: dict[str, Mark] = {}
    for raw in raws:
        loader.compile_rules(raw, seen)
    loader.check_references(seen)
    return loader.out
