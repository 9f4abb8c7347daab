"""docs/prometheus-alerts.yaml: valid for promtool, each alert proven by promtool's unit tests,
and every tocsin metric it names one the daemon exports (a rename breaks this, not the pager)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import tocsin.obs  # noqa: F401 - registers every metric the daemon exports

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "prometheus-alerts.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    """Test `promtool check rules`: the file loads as Prometheus would load it."""
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_each_alert_fires_when_it_should_in_promtool_unit_tests() -> None:
    """Test `promtool test rules`: the alerts fire on the series they are for, after `for`."""
    assert PROMTOOL is not None
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "prometheus-alerts.test.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_named_is_exported_by_tocsin() -> None:
    """Test the names in the expressions against the daemon's registry."""
    exported: set[str] = set()
    for family in REGISTRY.collect():
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
        if family.type == "counter":
            exported.add(family.name + "_total")
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    named = {m for rule in rules for m in re.findall(r"\btocsin_[a-z0-9_]+", rule["expr"])}
    assert named
    assert named - exported == set()
