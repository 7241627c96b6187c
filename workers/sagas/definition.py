"""A saga declared as data, and the pure function that moves it (no I/O).

A saga is a state machine over facts: each (state, event type) pair the
definition knows either *moves* the saga to another state or lets a service
*act* without moving it (a compensation that runs in whatever state it finds,
a step's own work). Everything else about an event type of the saga is
*late*: the saga has already gone past the state that expected it (its step's
deadline fired, or a compensation started), so the event is recorded in the
log as late and changes nothing. An event type the definition does not know
is an error of wiring, not of timing::

    decide(definition, "payment_pending", "payment.succeeded")  -> Move("stock_pending")
    decide(definition, "timed_out", "order.expired")            -> Act()
    decide(definition, "cancelled", "inventory.reserved")       -> Late("cancelled")

Deadlines are data too: a state may have one (seconds the step it waits on
may take), and the whole saga has one; when one fires while the saga is
still where it was, the saga moves to the definition's ``timeout_state``.
A compensation that fails for good moves it to ``compensation_failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The state every saga reaches when a compensation is dead-lettered.
COMPENSATION_FAILED = "compensation_failed"
#: The state an operator's ``saga resolve`` leaves a saga in.
RESOLVED = "resolved"


class SagaDefinitionError(ValueError):
    """A definition contradicts itself, or an event type is not part of it."""


@dataclass(frozen=True)
class Move:
    """The event moves the saga to ``to``."""

    to: str


@dataclass(frozen=True)
class Act:
    """The event's service does its work; the saga stays where it is."""


@dataclass(frozen=True)
class Late:
    """The saga has passed the state that expected this event; it is only logged."""

    state: str


Decision = Move | Act | Late


@dataclass(frozen=True)
class SagaDefinition:
    """One saga type: its states, which fact moves which state, its deadlines.

    Attributes:
        name: the saga type (``order``); recorded with every saga.
        initial: the state a new saga starts in.
        moves: ``(state, event type) -> next state``.
        acts: ``(state, event type)`` pairs where a service acts without moving the saga.
        terminal: states a saga never leaves.
        step_deadlines: ``state -> seconds`` the saga may wait in that state.
        saga_deadline: seconds the whole saga may take (0: no such deadline).
        timeout_state: where a fired deadline moves the saga.
        compensations: ``state -> event type`` whose handler compensates in that state.
        deadline_task: the task the broker delivers when a deadline passes.
        deadline_queue: the work queue of that task.
    """

    name: str
    initial: str
    moves: Mapping[tuple[str, str], str]
    terminal: frozenset[str]
    timeout_state: str
    deadline_task: str
    deadline_queue: str
    acts: frozenset[tuple[str, str]] = frozenset()
    step_deadlines: Mapping[str, float] = field(default_factory=dict)
    saga_deadline: float = 0.0
    compensations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = check(self)
        if problems:
            raise SagaDefinitionError(f"saga {self.name!r}: " + "; ".join(problems))

    @property
    def states(self) -> frozenset[str]:
        """Every state the definition names."""
        named = {self.initial, self.timeout_state, COMPENSATION_FAILED, RESOLVED, *self.terminal}
        for (state, _), to in self.moves.items():
            named.update((state, to))
        named.update(state for state, _ in self.acts)
        return frozenset(named)

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type the saga reacts to."""
        return frozenset(event for _, event in self.moves) | frozenset(event for _, event in self.acts)

    def is_terminal(self, state: str) -> bool:
        """Whether a saga in ``state`` is over (including failed compensation and resolved)."""
        return state in self.terminal or state in (COMPENSATION_FAILED, RESOLVED)

    def deadline_of(self, state: str) -> float | None:
        """Seconds a saga may stay in ``state`` before it times out (None: no deadline)."""
        seconds = self.step_deadlines.get(state)
        return float(seconds) if seconds else None


def check(definition: SagaDefinition) -> list[str]:
    """What is wrong with ``definition`` (empty: nothing)."""
    problems = []
    for (state, event), _ in definition.moves.items():
        if state in definition.terminal:
            problems.append(f"terminal state {state!r} cannot move on {event!r}")
        if (state, event) in definition.acts:
            problems.append(f"{event!r} in {state!r} both moves and acts")
    for state, seconds in definition.step_deadlines.items():
        if seconds <= 0:
            problems.append(f"deadline of {state!r} must be positive, got {seconds}")
        if state in definition.terminal:
            problems.append(f"terminal state {state!r} cannot have a deadline")
    if definition.saga_deadline < 0:
        problems.append(f"saga deadline must not be negative, got {definition.saga_deadline}")
    if definition.initial in definition.terminal:
        problems.append(f"initial state {definition.initial!r} is terminal")
    return problems


def decide(definition: SagaDefinition, state: str, event_type: str) -> Decision:
    """What ``event_type`` does to a saga of ``definition`` in ``state``.

    Raises:
        SagaDefinitionError: the event type is not part of the saga.
    """
    if event_type not in definition.event_types:
        raise SagaDefinitionError(f"saga {definition.name!r} does not react to {event_type!r}")
    to = definition.moves.get((state, event_type))
    if to is not None:
        return Move(to)
    if (state, event_type) in definition.acts:
        return Act()
    return Late(state)


def deadline_fires(definition: SagaDefinition, state: str, expected: str | None) -> Move | None:
    """Whether a deadline set for ``expected`` (None: the whole saga) moves a saga now in ``state``.

    Returns:
        The move to the timeout state, or None when the saga has left the
        state the deadline guarded (its step answered in time) or is over.
    """
    if definition.is_terminal(state) or state == definition.timeout_state:
        return None
    if expected is not None and state != expected:
        return None
    return Move(definition.timeout_state)


def failed_compensation(definition: SagaDefinition, state: str) -> Move | None:
    """The move of a saga in ``state`` whose compensation was dead-lettered (None: it is over)."""
    if state in definition.terminal or state in (COMPENSATION_FAILED, RESOLVED):
        return None
    return Move(COMPENSATION_FAILED)
