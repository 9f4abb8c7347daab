"""The contracts between compiled rules, the action kinds and the engine that runs them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tocsin.model import Event, IncidentChange, Outgoing, RunRequest
from tocsin.records.incidents import IncidentBook
from tocsin.rules.templates import Expression, Template, TemplateCompileError, compile_template
from tocsin.yamlsrc import Mark, SourceError

if TYPE_CHECKING:
    from tocsin.rules.correlation import Correlation

__all__ = [
    "ActionEnv",
    "ActionKind",
    "ActionOutput",
    "CompileContext",
    "CompiledAction",
    "Hit",
    "LogRequest",
    "Matcher",
    "Rule",
]

# A compiled matcher: fills the captures dict and says whether the event matches.
Matcher = Callable[[Event, dict[str, Any]], bool]


class Hit:
    """One rule matching one event: what actions see."""

    __slots__ = (
        "_variables",
        "captures",
        "count",
        "dropped",
        "event",
        "folded",
        "key",
        "lists",
        "rule",
        "since",
        "time",
    )

    def __init__(
        self,
        event: Event,
        rule: Rule,
        captures: dict[str, Any],
        lists: Mapping[str, list[Any]],
        variables: dict[str, Any] | None = None,
        *,
        time: float,
    ) -> None:
        self.event = event
        self.rule = rule
        self.captures = captures
        self.lists = lists
        self._variables = variables
        self.key = ""
        self.dropped = False
        self.time = time  # event time as the engine placed it (a very late event: "now")
        self.count = 1  # events this hit stands for (a threshold acts for `count` events)
        self.since = time  # the first of them
        self.folded = False  # a storm folded its would-be incident: its notifications wait

    @property
    def variables(self) -> Mapping[str, Any]:
        """Template variables, built on first use: a drop or a repeat needs none."""
        variables = self._variables
        if variables is None:
            event = self.event
            variables = {
                **self.captures,
                "event": event,
                "fields": event.fields,
                "lists": self.lists,
            }
            self._variables = variables
        return variables


@dataclass(slots=True)
class ActionOutput:
    """One line of what fired, as `tocsin replay` prints it."""

    time: float
    rule: str
    action: str
    op: str
    key: str
    fingerprint: str = ""
    title: str = ""
    count: int = 0


@dataclass(frozen=True, slots=True)
class LogRequest:
    """A structured log line a rule asked for; the I/O edge writes it after the batch."""

    level: str
    message: str
    rule: str
    event: Event | None  # None: about the rule's state (flapping settled), not one event


class ActionEnv(Protocol):
    """What an action may touch: the incident book and the batch's outputs; no I/O."""

    book: IncidentBook
    changes: list[IncidentChange]
    logs: list[LogRequest]
    outbox: list[Outgoing]  # messages to deliver once the batch is committed
    runs: list[RunRequest]  # remediation runs to commit with the batch
    outputs: list[ActionOutput] | None

    def fold_new(self, hit: Hit) -> int:
        """For a would-be new incident: how many its rule's storm guard folded (0: open it)."""

    def forget(self, rule_id: str, key: str) -> None:
        """Drop a rule's correlation state for a key whose incident was resolved."""


class CompiledAction(Protocol):
    """An action ready to run; `run` must not do I/O."""

    @property
    def kind(self) -> str:
        """The action kind's name, for metrics and output."""

    @property
    def notifies(self) -> bool:
        """Whether it tells people (held while muted), rather than keeping records."""

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Apply the action for one hit."""

    def referenced_rules(self) -> tuple[str, ...]:
        """Rule ids this action refers to, checked after all rules are loaded."""


@dataclass(slots=True)
class CompileContext:
    """What an action compiler needs to turn its YAML into a CompiledAction."""

    rule_id: str

    def error(self, where: Mark, message: str) -> SourceError:
        """Build the error to raise, prefixed with the rule it belongs to."""
        return SourceError(where, f"rule '{self.rule_id}': {message}")

    def template(self, value: Any, where: Mark, what: str) -> Template:
        """Compile a template option, turning Jinja2 syntax errors into file:line errors."""
        if not isinstance(value, str):
            raise self.error(where, f"{what} must be text")
        try:
            return compile_template(value)
        except TemplateCompileError as exc:
            raise self.error(where, f"{what} is not a valid template: {exc}") from None


class ActionKind(Protocol):
    """A registered kind of action (incident, resolve, drop, log, ...)."""

    @property
    def name(self) -> str:
        """The key rules write it under."""

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> CompiledAction:
        """Validate the YAML under the action's key and compile it, or raise SourceError."""


@dataclass(slots=True)
class Rule:
    """A compiled rule."""

    id: str
    mark: Mark
    matcher: Matcher | None  # None: a group rule, fed by its member rules
    actions: list[CompiledAction]
    description: str = ""
    tags: tuple[str, ...] = ()
    when: Expression | None = None
    key: Template | None = None
    continue_: bool = False
    prefilter: str | None = None  # an RE2 pattern the message must match for the rule to match
    correlation: Correlation | None = None
    max_keys: int | None = None  # correlation state bound; None: the daemon's default
    digest: str = ""  # identifies the definition: unchanged on reload means state is kept
