"""What new incidents do to problems: known errors put their workaround on them, and the
recurrence policy opens problems or links to open ones. Pure: the daemon commits the result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from tocsin import obs
from tocsin.model import Incident, IncidentChange
from tocsin.records.known_errors import KnownErrorBook
from tocsin.records.problems import (
    TARGETS,
    ProblemBook,
    ProblemChange,
    ProblemError,
    RecurrencePolicy,
    track_recurrence,
)
from tocsin.store.base import CommitBatch, HistoryEntry

__all__ = ["RECURRENCE_DOCUMENT", "KeeperReaction", "ProblemKeeper", "problem_rows"]

RECURRENCE_DOCUMENT = "recurrence"  # the store document with the recurrence counts
_STATE_OPS = frozenset({op for op, _ in TARGETS.values()} | {"open"})


@dataclass(slots=True)
class KeeperReaction:
    """Incident notes (workarounds, links) and problem rows to commit with their cause."""

    changes: list[IncidentChange] = field(default_factory=list)
    problems: list[ProblemChange] = field(default_factory=list)
    documents: dict[str, str] = field(default_factory=dict)

    def into(self, batch: CommitBatch) -> None:
        """Add the problem rows, their timelines and the documents to a commit."""
        rows, history = problem_rows(self.problems)
        batch.problems.update(rows)
        batch.problem_history.extend(history)
        batch.documents.update(self.documents)


def problem_rows(
    changes: Sequence[ProblemChange],
) -> tuple[dict[int, tuple[str, str]], list[HistoryEntry]]:
    """Snapshot changed problems (JSON, now) and their timeline entries; every problem change
    is saved through here, so here it is counted."""
    rows: dict[int, tuple[str, str]] = {}
    history: list[HistoryEntry] = []
    for change in changes:
        obs.PROBLEM_CHANGES.labels(change.op).inc()
        problem = change.problem
        rows[problem.id] = (str(problem.state), json.dumps(problem.to_dict()))
        after = change.state or str(problem.state)
        history.append(
            HistoryEntry(
                problem.id,
                change.time,
                None if change.op == "open" else (change.previous or after),
                after,
                change.actor,
                change.note,
                "state" if change.op in _STATE_OPS else change.op,
            )
        )
    return rows, history


class ProblemKeeper:
    """Applies known errors and the recurrence policy to incidents as they open."""

    def __init__(
        self, *, book: ProblemBook, policy: RecurrencePolicy, known: KnownErrorBook
    ) -> None:
        self.book = book
        self.policy = policy
        self.known = known

    def react(self, changes: Sequence[IncidentChange], now: float) -> KeeperReaction:
        """For each incident opened or reopened: its known error, then its recurrence."""
        reaction = KeeperReaction()
        counted = False
        for change in changes:
            if change.op not in ("open", "reopen"):
                continue
            incident = change.incident
            self._known_error(incident, now, reaction)
            if self.policy.rules:
                counted = True
                # Event time, as the incident's: a backlog read late counts as it happened.
                made = track_recurrence(self.book, self.policy, incident, now=change.time)
                reaction.problems.extend(made)
                for problem_change in made:
                    self._linked(problem_change, incident, now, reaction)
        if counted:
            reaction.documents[RECURRENCE_DOCUMENT] = json.dumps(self.policy.dump())
        return reaction

    def _known_error(self, incident: Incident, now: float, reaction: KeeperReaction) -> None:
        """Put the matching known error's workaround on the incident; link its problem."""
        entry = self.known.match(incident)
        if entry is None:
            return
        obs.KNOWN_ERROR_MATCHES.labels(entry.name).inc()
        incident.workaround = entry.workaround
        note = f"known error {entry.name}: workaround: {entry.workaround}"
        if entry.root_cause:
            note += f"; root cause: {entry.root_cause}"
        reaction.changes.append(
            IncidentChange("workaround", incident, now, incident.count,
                           f"known-error:{entry.name}", note=note)
        )  # fmt: skip
        problem = self.book.get(entry.problem) if entry.problem is not None else None
        if problem is not None and problem.is_open and incident.id not in problem.incidents:
            try:
                made = self.book.link(
                    problem, incident.id, time=now, actor=f"known-error:{entry.name}"
                )
            except ProblemError:
                return
            reaction.problems.append(made)
            self._linked(made, incident, now, reaction)

    def _linked(
        self, change: ProblemChange, incident: Incident, now: float, reaction: KeeperReaction
    ) -> None:
        """Note a link on the incident; a known error's workaround comes along if it has none."""
        if change.op != "link" or change.incident != incident.id:
            return
        problem = change.problem
        note = f"linked to problem {problem.id}: {problem.title}"
        if problem.workaround and not incident.workaround:
            incident.workaround = problem.workaround
            note += f"; workaround: {problem.workaround}"
        reaction.changes.append(
            IncidentChange("problem", incident, now, incident.count, change.actor, note=note)
        )
