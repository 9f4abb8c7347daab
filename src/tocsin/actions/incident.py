"""The `incident` action: open an incident, or count one more occurrence on the open one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tocsin.records.incidents import STORM_KEY, fingerprint
from tocsin.records.priority import RATINGS
from tocsin.rules.schema import check_keys, expect_map, expect_str
from tocsin.rules.templates import Template
from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit
from tocsin.yamlsrc import Mark, value_mark

__all__ = ["IncidentAction", "IncidentKind"]

_KEYS = ("title", "description", "service", "category", "impact", "urgency", "labels")


@dataclass(frozen=True, slots=True)
class IncidentAction:
    """Raise an incident keyed by rule id and rendered key."""

    rule: str
    title: Template
    description: Template | None
    service: str
    category: str
    impact: str
    urgency: str
    labels: tuple[tuple[str, Template], ...]
    kind: str = "incident"
    notifies: bool = False

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Open or update; only an open renders the title, description and labels."""
        fp = fingerprint(self.rule, hit.key)
        time = hit.time
        open_one = env.book.get(fp)
        if open_one is None and (folded := env.fold_new(hit)):
            hit.folded = True
            self._fold(hit, env, folded)
            return
        if open_one is not None:
            change = env.book.recur(
                open_one, time=time, count=hit.count, actor=f"rule:{self.rule}", event=hit.event
            )
        else:
            variables = hit.variables
            change = env.book.open(
                rule=self.rule,
                key=hit.key,
                title=self.title.render(variables),
                description=self.description.render(variables) if self.description else "",
                service=self.service,
                category=self.category,
                impact=self.impact,
                urgency=self.urgency,
                labels={name: t.render(variables) for name, t in self.labels},
                time=time,
                count=hit.count,
                since=hit.since,
                actor=f"rule:{self.rule}",
                event=hit.event,
            )
        env.changes.append(change)
        if env.outputs is not None:
            incident = change.incident
            env.outputs.append(
                ActionOutput(
                    time,
                    self.rule,
                    "incident",
                    change.op,
                    hit.key,
                    fp,
                    incident.title,
                    change.count,
                )
            )

    def _fold(self, hit: Hit, env: ActionEnv, folded: int) -> None:
        """Count a new incident into the rule's storm summary instead: nothing is dropped."""
        fp = fingerprint(self.rule, STORM_KEY)
        summary = env.book.get(fp)
        if summary is not None:
            change = env.book.recur(summary, time=hit.time, actor=f"rule:{self.rule}")
            summary.labels["folded_keys"] = str(folded)
            summary.labels["last_key"] = hit.key
        else:
            change = env.book.open(
                rule=self.rule,
                key=STORM_KEY,
                title=f"Storm: rule {self.rule} raises new incidents too fast; folded here",
                impact=self.impact,
                urgency=self.urgency,
                service=self.service,
                category=self.category,
                labels={"folded_keys": str(folded), "last_key": hit.key},
                time=hit.time,
                actor=f"rule:{self.rule}",
            )
        env.changes.append(change)
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(
                    hit.time, self.rule, "incident", change.op, STORM_KEY, fp,
                    change.incident.title, change.count,
                )
            )  # fmt: skip

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class IncidentKind:
    """Compiles `incident:` specs."""

    name = "incident"

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> IncidentAction:
        """Validate title, impact, urgency, labels and the rest."""
        data = expect_map(spec, mark, "'incident'", ctx.error)
        check_keys(data, _KEYS, "incident option", ctx.error, required=("title",))

        def level(name: str) -> str:
            value = data.get(name, "medium")
            where = value_mark(data, name, mark)
            if value not in RATINGS:
                raise ctx.error(where, f"{name} must be one of high, medium, low, not {value!r}")
            return str(value)

        labels_spec = expect_map(
            data.get("labels"), value_mark(data, "labels", mark), "labels", ctx.error
        )
        labels = tuple(
            (
                expect_str(name, labels_spec.key_marks.get(name, mark), "a label name", ctx.error),
                ctx.template(value, value_mark(labels_spec, name, mark), f"label '{name}'"),
            )
            for name, value in labels_spec.items()
        )
        description = data.get("description")
        return IncidentAction(
            rule=ctx.rule_id,
            title=ctx.template(data["title"], value_mark(data, "title", mark), "title"),
            description=ctx.template(
                description, value_mark(data, "description", mark), "description"
            )
            if description is not None
            else None,
            service=expect_str(
                data.get("service", ""), value_mark(data, "service", mark), "service", ctx.error
            ),
            category=expect_str(
                data.get("category", ""), value_mark(data, "category", mark), "category", ctx.error
            ),
            impact=level("impact"),
            urgency=level("urgency"),
            labels=labels,
        )
