"""The docs stay honest: every relative link and #anchor in README.md and docs/*.md resolves, and
every tocsin_ metric the docs name is one the daemon exports (a rename breaks this, not a reader)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from prometheus_client import REGISTRY

import tocsin.obs  # noqa: F401 - registers every metric the daemon exports

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
SOURCE = ROOT / "src" / "tocsin"

# Names in the docs that start with tocsin_ and are not metrics. Each must be a log event the
# source really emits (checked below), so this list cannot hide a wrong name.
NOT_METRICS = {
    "tocsin_started": "log event: the daemon is up",
    "tocsin_stopping": "log event: a stop began",
    "tocsin_stopped": "log event: a clean stop ended",
    "tocsin_cannot_start": "log event: a startup failure",
    "tocsin_exit_now": "log event: a second signal",
}

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_METRIC = re.compile(r"\btocsin_[a-z0-9_]*[a-z0-9]")


def _prose(text: str) -> list[tuple[int, str]]:
    """Return (line number, line) for each line outside fenced code blocks."""
    lines: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """Return GitHub's anchor for a heading: link text kept, punctuation dropped, '-' for spaces."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Return the anchors of a page's headings, numbering repeats as GitHub does (-1, -2)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose(page.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """Return (line, target) of every relative link in a page's prose (code spans left out)."""
    found: list[tuple[int, str]] = []
    for number, line in _prose(page.read_text(encoding="utf-8")):
        for target in _LINK.findall(re.sub(r"`[^`]*`", "``", line)):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                found.append((number, target))
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Return each link of `page` whose file, or heading in that file, does not exist."""
    problems: list[str] = []
    for number, target in links(page):
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(root)}:{number}: {target}"
        goal = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not goal.exists():
            problems.append(f"{where}: no such file")
        elif anchor and goal.suffix == ".md" and unquote(anchor) not in anchors(goal):
            problems.append(f"{where}: no heading with anchor #{anchor} in {goal.name}")
    return problems


def exported_metrics() -> set[str]:
    """Return every series name tocsin's registry exports, counters with their _total."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{end}" for end in ("", "_bucket", "_count", "_sum"))
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names


def unknown_metrics(page: Path, exported: set[str], root: Path = ROOT) -> list[str]:
    """Return each tocsin_ name in a page that is neither exported nor a known log event."""
    problems: list[str] = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        for name in _METRIC.findall(line):
            if name not in exported and name not in NOT_METRICS:
                problems.append(f"{page.relative_to(root)}:{number}: {name}")
    return problems


def test_slugs_follow_githubs_rules() -> None:
    """Test the anchor rules on headings the docs really have (code, colons, punctuation)."""
    assert slug("Durability: what survives `kill -9`") == "durability-what-survives-kill--9"
    assert slug("The `publish` action") == "the-publish-action"
    assert slug("Health, metrics and logs") == "health-metrics-and-logs"
    assert slug("[`suppress`](#suppress) and more") == "suppress-and-more"


def test_checks_catch_a_broken_link_and_a_wrong_metric(tmp_path: Path) -> None:
    """Test that a missing file, a missing heading and an unknown metric are each reported."""
    (tmp_path / "other.md").write_text(
        "# Other\n\n## Real heading\n\n```sh\n# not a heading\n```\n\n## Same\n\n## Same\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#real-heading) [gone](missing.md) [bad](other.md#not-a-heading)\n"
        "`[code](ignored.md)` [self](#heading) [twice](other.md#same-1) [thrice](other.md#same-2)\n"
        "\n# Heading\n\n"
        "`tocsin_queue_depth` and `tocsin_queue_deepness` and `tocsin_started`\n"
        "`tocsin_rule_matches_total`, not `tocsin_rule_matches`\n"
    )
    assert broken_links(page, tmp_path) == [
        "page.md:1: missing.md: no such file",
        "page.md:1: other.md#not-a-heading: no heading with anchor #not-a-heading in other.md",
        "page.md:2: other.md#same-2: no heading with anchor #same-2 in other.md",
    ]
    assert unknown_metrics(page, exported_metrics(), tmp_path) == [
        "page.md:6: tocsin_queue_deepness",
        "page.md:7: tocsin_rule_matches",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    """Test that each relative link names an existing file and, for #anchors, a heading in it."""
    assert broken_links(page) == []


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_metric_named_is_exported(page: Path) -> None:
    """Test each tocsin_ name in a doc against the registry the daemon serves on /metrics."""
    assert unknown_metrics(page, exported_metrics()) == []


def test_the_names_that_are_not_metrics_are_log_events() -> None:
    """Test that each exception is a log event in the source, so it cannot cover a typo."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in SOURCE.rglob("*.py"))
    exported = exported_metrics()
    for name in NOT_METRICS:
        assert f'"{name}"' in source, name
        assert name not in exported, name
