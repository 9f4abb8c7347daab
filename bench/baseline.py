"""Bare-Python floors: the bench rules' line regexes per line, with `re` or behind an RE2 Set."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import re2
from translate import load_rules


def run_re(path: Path) -> tuple[int, Counter[str]]:
    """Search each line with the rules' regexes in order until the first match (as SEC does)."""
    searches = [(rule.id, re.compile(rule.regex).search) for rule in load_rules()]
    counts: Counter[str] = Counter()
    lines = 0
    with path.open(encoding="utf-8") as lines_in:
        for line in lines_in:
            lines += 1
            for rule_id, search in searches:
                if search(line) is not None:
                    counts[rule_id] += 1
                    break
    return lines, counts


def run_re2set(path: Path) -> tuple[int, Counter[str]]:
    """Ask an RE2 Set which rules match; run only the first one's regex, for its captures."""
    rules = load_rules()
    prefilter = re2.Set.SearchSet(re2.Options())
    for rule in rules:
        prefilter.Add(rule.regex)
    prefilter.Compile()
    match = prefilter.Match
    searches = [(rule.id, re.compile(rule.regex).search) for rule in rules]
    counts: Counter[str] = Counter()
    lines = 0
    with path.open(encoding="utf-8") as lines_in:
        for line in lines_in:
            lines += 1
            hits = match(line)
            if hits:
                rule_id, search = searches[min(hits)]
                if search(line) is not None:
                    counts[rule_id] += 1
    return lines, counts


RUNNERS = {"re": run_re, "re2set": run_re2set}


def main() -> int:
    """Run one baseline over a file and print {"lines", "matches"} as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=sorted(RUNNERS))
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    lines, counts = RUNNERS[args.mode](args.file)
    json.dump({"lines": lines, "matches": dict(sorted(counts.items()))}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
