"""The explicit registry of action kinds; later issues add theirs here."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from tocsin.actions.drop import DropKind
from tocsin.actions.incident import IncidentKind
from tocsin.actions.log import LogKind
from tocsin.actions.publish import PublishKind
from tocsin.actions.remediate import RemediateKind
from tocsin.actions.resolve import ResolveKind
from tocsin.actions.service import AccessKind, ProblemKind, RequestKind
from tocsin.records.access_policy import AccessPolicy
from tocsin.records.catalog import CatalogItem
from tocsin.rules.types import ActionKind
from tocsin.runbooks.settings import Runbook

__all__ = ["ACTION_KINDS", "action_kinds"]


def action_kinds(
    *,
    brokers: Collection[str] | None = None,
    runbooks: Mapping[str, Runbook] | None = None,
    catalog: Mapping[str, CatalogItem] | None = None,
    access: AccessPolicy | None = None,
) -> Mapping[str, ActionKind]:
    """Return every action kind; `brokers` are the MQTT broker names (None: not known here),
    `runbooks` the configured runbooks."""
    kinds: tuple[ActionKind, ...] = (
        IncidentKind(),
        ResolveKind(),
        DropKind(),
        LogKind(),
        PublishKind(brokers=brokers),
        RemediateKind(runbooks),
        RequestKind(catalog),
        AccessKind(access),
        ProblemKind(),
    )
    return {kind.name: kind for kind in kinds}


# For loading rules without a config (`tocsin check PATHS`, tests): any broker name is accepted.
ACTION_KINDS = action_kinds()
