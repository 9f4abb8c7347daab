"""The explicit registry of action kinds; later issues add theirs here."""

from __future__ import annotations

from collections.abc import Mapping

from tocsin.actions.drop import DropKind
from tocsin.actions.incident import IncidentKind
from tocsin.actions.log import LogKind
from tocsin.actions.resolve import ResolveKind
from tocsin.rules.types import ActionKind

__all__ = ["ACTION_KINDS"]

ACTION_KINDS: Mapping[str, ActionKind] = {
    kind.name: kind for kind in (IncidentKind(), ResolveKind(), DropKind(), LogKind())
}
