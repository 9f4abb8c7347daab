"""Translate the bench YAML rules into whole-line regexes and an equivalent SEC 2.9 config."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
RULES_DIR = BENCH / "rules"
SEC_CONF = BENCH / "sec" / "bench.conf"

# The RFC 3164 header as gen_syslog.py writes it ("Nov 25 18:30:21 host "); the host is
# captured only by rules whose key or title needs it, so SEC does no more work than needed.
_STAMP = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d "
_TAG_END = r"(?:\[\d+\])?: "
_TEMPLATE = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_EVENT_GROUPS = {"event.host": "host", "event.program": "program"}

# Per-key incident counts live in one Perl hash shared by every rule, like tocsin's open
# incidents: the first match of a (rule, key) opens, later ones update, a resolve deletes.
_OPEN_SUB = (
    '( sub { my $k = "$_[0] $_[1]"; my $n = ++$main::tocsin_open{$k}; '
    'return ($n == 1 ? "open " : "update ") . "$k $n" } )'
)
_RESOLVE_SUB = (
    '( sub { my $k = "$_[0] $_[1]"; my $n = delete $main::tocsin_open{$k}; '
    'return defined($n) ? "resolve $k $n" : "" } )'
)


@dataclass(frozen=True, slots=True)
class BenchRule:
    """One rule reduced to what SEC and the bare-Python baselines need."""

    id: str
    description: str
    regex: str  # searched in the whole raw line
    kind: str  # "incident" | "resolve" | "drop"
    target: str  # the rule whose incidents the action opens or resolves
    key: str  # SEC form: $+{name}
    title: str  # SEC form


def _template_names(text: str) -> set[str]:
    """Return the names a Jinja-style template uses."""
    return set(_TEMPLATE.findall(text))


def _to_sec(text: str) -> str:
    """Rewrite '{{ name }}' / '{{ event.host }}' as SEC match variables."""
    return _TEMPLATE.sub(lambda m: "$+{" + _EVENT_GROUPS.get(m[1], m[1]) + "}", text)


def _conditions(rule: dict[str, Any], macros: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the rule's match conditions with its macro expanded."""
    match = dict(rule["match"])
    name = match.pop("macro", None)
    if name is not None:
        match = {**macros[name], **match}
    unknown = set(match) - {"program", "message"}
    if unknown:
        raise ValueError(f"{rule['id']}: only program and message are translated, not {unknown}")
    return match


def _line_regex(rule_id: str, match: dict[str, Any], names: set[str]) -> str:
    """Build the whole-line regex equivalent to a program condition plus a message regex."""
    message = match["message"]
    if set(message) != {"regex"}:
        raise ValueError(f"{rule_id}: only message regexes are translated")
    body: str = message["regex"]
    if body != body.rstrip():
        raise ValueError(f"{rule_id}: SEC strips a pattern's trailing blanks; end it otherwise")
    programs = match.get("program")
    host = r"(?P<host>\S+) " if "event.host" in names else r"\S+ "
    if programs is None:
        if body.startswith("^") or "event.program" in names:
            raise ValueError(f"{rule_id}: '^' or event.program needs a program condition")
        return _STAMP + host + ".*?" + body if "event.host" in names else body
    values = [programs] if isinstance(programs, str) else list(programs)
    alternation = "|".join(re.escape(value) for value in values)
    if "event.program" in names:
        program = f"(?P<program>{alternation})"
    else:
        program = alternation if len(values) == 1 else f"(?:{alternation})"
    rest = body[1:] if body.startswith("^") else ".*?" + body
    return _STAMP + host + program + _TAG_END + rest


def load_rules(rules_dir: Path = RULES_DIR) -> list[BenchRule]:
    """Load the YAML rule files in name order, as tocsin does, and translate each rule."""
    macros: dict[str, dict[str, Any]] = {}
    rules: list[BenchRule] = []
    for path in sorted(rules_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        macros.update(doc.get("macros") or {})
        for raw in doc["rules"]:
            (action,) = raw["actions"]
            ((kind, params),) = action.items()
            key = raw.get("key", "")
            title = (params or {}).get("title", "")
            names = _template_names(key) | _template_names(title)
            regex = _line_regex(raw["id"], _conditions(raw, macros), names)
            groups = set(re.compile(regex).groupindex)
            missing = {_EVENT_GROUPS.get(name, name) for name in names} - groups
            if missing:
                raise ValueError(f"{raw['id']}: templates use {missing}, not captured")
            target = params["rule"] if kind == "resolve" else raw["id"]
            rules.append(
                BenchRule(
                    id=raw["id"],
                    description=raw.get("description", ""),
                    regex=regex,
                    kind=kind,
                    target=target,
                    key=_to_sec(key),
                    title=_to_sec(title),
                )
            )
    return rules


def _sec_action(rule: BenchRule) -> str:
    """Return the SEC action list doing the same work as the tocsin action."""
    if rule.kind == "drop":
        return "none"
    if rule.kind == "resolve":
        return f"lcall %op {rule.target} {rule.key} -> {_RESOLVE_SUB}; if %op ( write - %op )"
    return f"lcall %op {rule.target} {rule.key} -> {_OPEN_SUB}; write - %op {rule.title}"


def sec_config(rules: list[BenchRule]) -> str:
    """Render the SEC config: one file, so DontCont makes the first match win across all rules."""
    out = [
        "# Generated by bench/translate.py from bench/rules/*.yaml: do not edit by hand.",
        "# One file on purpose: SEC matches every config file's rules separately, so only a",
        "# single file gives tocsin's first-match-wins order across all the rules.",
        "# Action output: '<open|update|resolve> <rule> <key> <count> [title]' on stdout.",
    ]
    for number, rule in enumerate(rules, 1):
        out += [
            "",
            f"# {number}/{len(rules)} {rule.id}: {rule.description}",
            "type=Single",
            "ptype=RegExp",
            f"pattern={rule.regex}",
            f"desc={rule.id}",
            f"action={_sec_action(rule)}",
        ]
    return "\n".join(out) + "\n"


def main() -> int:
    """Write bench/sec/bench.conf, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the SEC config is stale")
    args = parser.parse_args()
    text = sec_config(load_rules())
    if args.check:
        current = SEC_CONF.read_text() if SEC_CONF.exists() else ""
        if current != text:
            print(f"{SEC_CONF} is stale: run bench/translate.py", file=sys.stderr)
            return 1
        return 0
    SEC_CONF.parent.mkdir(parents=True, exist_ok=True)
    SEC_CONF.write_text(text)
    print(f"wrote {SEC_CONF}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
