"""The merchandisers' review decisions: an append-only JSON Lines file guarded by a file lock.

Every decision is one line ``{"id", "at", "who", "client", "action", "key", "value", "target", "topic_id",
"note"}``. Appends take an exclusive ``fcntl.flock`` and write the whole line in one ``write`` followed by
``fsync``, so concurrent reviewers (threads or processes) never lose or interleave a decision. Nothing is
ever rewritten: an undo is a later decision, and the latest decision about a target wins.
Lines that cannot be parsed (a hand edit gone wrong) are skipped and counted, never fatal.
"""
from __future__ import annotations

import fcntl
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
import threading
from typing import Iterable

from pinlanding.collections.artifacts import AnyPath, as_path, atomic_path, is_remote
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import normalize_value

VALUE_ACTIONS = ("approve", "reject", "rename", "merge", "split")
TOPIC_ACTIONS = ("accept", "reject_topic")
# collection-level merchandising, applied by the feeds stage: value = product id (pin/exclude) or the
# window's first day (ISO date); target = position (pin), new title (retitle) or the window's last day
MERCH_ACTIONS = ("pin", "exclude", "retitle", "window")
UNDO = "undo"  # back to pending: ``undoes`` names the decision whose effect ends
ACTIONS = VALUE_ACTIONS + TOPIC_ACTIONS + MERCH_ACTIONS + (UNDO,)
# which stages a decision changes (their fingerprints digest only these families)
FAMILIES = {"value": VALUE_ACTIONS, "topic": TOPIC_ACTIONS, "merch": MERCH_ACTIONS}
MAX_FIELD_CHARS = 500


@dataclass(frozen=True)
class Decision:
    """One reviewer decision about a value (``key``/``value``/``target``) or a topic (``topic_id``)."""

    action: str
    who: str
    key: str = ""
    value: str = ""
    target: str = ""  # rename: the new name; merge: the value to merge into
    topic_id: str = ""
    note: str = ""
    client: str = ""
    undoes: str = ""  # undo: the id of the decision undone
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def validate(self) -> "Decision":
        """Raise ``ValueError`` naming the problem when the decision is incomplete or unknown."""
        if self.action not in ACTIONS:
            raise ValueError(f"unknown review action '{self.action}'; known: {list(ACTIONS)}")
        if not self.who.strip():
            raise ValueError("a decision must say who made it")
        for name in ("who", "key", "value", "target", "topic_id", "note", "client", "undoes"):
            if len(getattr(self, name)) > MAX_FIELD_CHARS:
                raise ValueError(f"decision field '{name}' is longer than {MAX_FIELD_CHARS} characters")
        if self.action in VALUE_ACTIONS and not (self.key.strip() and normalize_value(self.value)):
            raise ValueError(f"'{self.action}' needs a key and a non-empty value")
        if self.action in ("rename", "merge") and not normalize_value(self.target):
            raise ValueError(f"'{self.action}' needs a non-empty target value")
        if self.action in TOPIC_ACTIONS + MERCH_ACTIONS and not self.topic_id.strip():
            raise ValueError(f"'{self.action}' needs a topic_id")
        if self.action == UNDO and not self.undoes.strip():
            raise ValueError("'undo' needs the id of the decision it undoes")
        if self.action in ("pin", "exclude") and not self.value.strip():
            raise ValueError(f"'{self.action}' needs a product id")
        if self.action == "pin" and not (self.target.isdigit() and 1 <= int(self.target) <= 1000):
            raise ValueError("'pin' needs a position from 1 to 1000")
        if self.action == "retitle" and not " ".join(self.target.split()):
            raise ValueError("'retitle' needs a non-empty title")
        if self.action == "window":
            self._check_window()
        return self

    def _check_window(self) -> None:
        try:
            start = date.fromisoformat(self.value) if self.value else None
            end = date.fromisoformat(self.target) if self.target else None
        except ValueError:
            raise ValueError("a publish window's dates must be YYYY-MM-DD") from None
        if start is None and end is None:
            raise ValueError("a publish window needs a first or a last day")
        if start and end and end < start:
            raise ValueError("a publish window must not end before it starts")

    @property
    def family(self) -> str:
        """``value``, ``topic``, ``merch`` or ``undo``."""
        return next((name for name, actions in FAMILIES.items() if self.action in actions), UNDO)


def decisions_path(layout: RunLayout, configured: str | None = None) -> AnyPath:
    """Where a run's decisions live: ``vocab.decisions_path`` if set, else ``RUN/review/decisions.jsonl``."""
    return as_path(configured) if configured else layout.root / "review" / "decisions.jsonl"


_REMOTE_APPEND = threading.Lock()


class DecisionStore:
    """Append and read decisions in one JSON Lines file (local, or on object storage)."""

    def __init__(self, path: str | AnyPath) -> None:
        self.path = as_path(path)
        self.skipped_ = 0  # unparseable lines seen by the last read

    def append(self, decision: Decision) -> Decision:
        """Validate and durably append one decision; safe under concurrent writers on a local disk.

        An object store cannot append: the file is rewritten whole (one atomic upload), serialized within
        this process only, so one review server per run folder may write there.
        """
        self.extend([decision])
        return decision

    def extend(self, decisions: list[Decision]) -> list[Decision]:
        """Validate all, then append them in one write and one ``fsync`` (a bulk decision is all or nothing)."""
        for decision in decisions:
            decision.validate()
        line = "".join(json.dumps(asdict(d), ensure_ascii=False, sort_keys=True) + "\n" for d in decisions).encode("utf-8")
        if not decisions:
            return decisions
        if is_remote(self.path):
            with _REMOTE_APPEND:
                old = self.path.read_bytes() if self.path.exists() else b""
                with atomic_path(self.path) as tmp:
                    tmp.write_bytes(old + line)
            return decisions
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                written = os.write(fd, line)
                if written != len(line):  # pragma: no cover - a full disk
                    raise OSError(f"short write to {self.path}")
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return decisions

    def read(self) -> list[Decision]:
        """Every valid decision, in the order they were made (file order)."""
        self.skipped_ = 0
        if not self.path.exists():
            return []
        data = self.path.read_bytes() if is_remote(self.path) else self._read_locked()
        out: list[Decision] = []
        names = set(Decision.__dataclass_fields__)
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
                out.append(Decision(**{k: str(v) for k, v in obj.items() if k in names}).validate())
            except (ValueError, TypeError, UnicodeDecodeError):
                self.skipped_ += 1
        return out

    def _read_locked(self) -> bytes:
        with open(self.path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            try:
                return f.read()
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass
class Merchandising:
    """A collection's rules in force: pinned positions (1-based), excluded products, title, publish window."""

    pins: dict[str, int] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)
    title: str = ""
    window: tuple[str, str] = ("", "")  # (first day, last day), ISO dates, "" = open

    def empty(self) -> bool:
        return not (self.pins or self.excluded or self.title or any(self.window))


@dataclass
class ReviewState:
    """The effective decisions: the latest one per target wins; an undo clears its decision's target.

    Value decisions are keyed by ``(key, normalized value)``; a value has at most one status decision
    (approve/reject) and one mapping decision (rename/merge/split) in force.
    """

    status: dict[tuple[str, str], Decision] = field(default_factory=dict)
    mapping: dict[tuple[str, str], Decision] = field(default_factory=dict)
    topics: dict[str, Decision] = field(default_factory=dict)
    merch: dict[str, Merchandising] = field(default_factory=dict)
    by_id: dict[str, Decision] = field(default_factory=dict)
    undone: dict[str, Decision] = field(default_factory=dict)  # undone decision id -> the undo
    in_force: dict[tuple[str, ...], str] = field(default_factory=dict)  # what is decided -> id of the decision in force
    count: int = 0
    skipped: int = 0

    @classmethod
    def from_decisions(cls, decisions: Iterable[Decision], fold_plurals: bool = True, skipped: int = 0) -> "ReviewState":
        state = cls(skipped=skipped)
        for d in decisions:
            state.count += 1
            state.by_id[d.id] = d
            if d.action == UNDO:
                old = state.by_id.get(d.undoes)
                if old is not None and old.action != UNDO and old.id in state.in_force.values():
                    state.undone[old.id] = d
                    state._apply(old, fold_plurals, undo=True)
            else:
                state._apply(d, fold_plurals)
        return state

    def _slot(self, d: Decision, fold_plurals: bool) -> tuple[str, ...]:
        """What a decision decides: one decision per slot is in force."""
        if d.action in TOPIC_ACTIONS:
            return ("topic", d.topic_id)
        if d.action in ("pin", "exclude"):  # a product is pinned or excluded, never both
            return ("product", d.topic_id, d.value)
        if d.action in MERCH_ACTIONS:
            return (d.action, d.topic_id)
        kind = "status" if d.action in ("approve", "reject") else "mapping"
        return (kind, key_form(d.key), normalize_value(d.value, fold_plurals))

    def _apply(self, d: Decision, fold_plurals: bool, undo: bool = False) -> None:
        """Put ``d`` in force, or (``undo``) clear its slot back to pending if ``d`` is still what is in force there."""
        slot = self._slot(d, fold_plurals)
        if undo and self.in_force.get(slot) != d.id:
            return  # a later decision already replaced it
        if undo:
            del self.in_force[slot]
        else:
            self.in_force[slot] = d.id
        table = {"topic": self.topics, "status": self.status, "mapping": self.mapping}.get(slot[0])
        if table is not None:
            name = d.topic_id if slot[0] == "topic" else slot[1:]
            if undo:
                table.pop(name, None)
            else:
                table[name] = d
        else:
            rules = self.merch.setdefault(d.topic_id, Merchandising())
            if slot[0] == "product":
                rules.pins.pop(d.value, None)
                rules.excluded.discard(d.value)
                if not undo and d.action == "pin":
                    rules.pins[d.value] = int(d.target)
                elif not undo:
                    rules.excluded.add(d.value)
            elif d.action == "retitle":
                rules.title = "" if undo else " ".join(d.target.split())
            else:
                rules.window = ("", "") if undo else (d.value, d.target)

    def undoable(self, d: Decision) -> bool:
        """Whether ``d`` is the decision in force for what it decides (a replaced or undone one is not)."""
        return d.action != UNDO and d.id in self.in_force.values()

    def rejected(self, key: str, norm: str) -> Decision | None:
        d = self.status.get((key, norm))
        return d if d is not None and d.action == "reject" else None

    def approved(self, key: str, norm: str) -> Decision | None:
        d = self.status.get((key, norm))
        return d if d is not None and d.action == "approve" else None

    def split(self, key: str, norm: str) -> bool:
        d = self.mapping.get((key, norm))
        return d is not None and d.action == "split"

    def protected(self, key: str, norm: str) -> bool:
        """Values a reviewer acted on stay out of frequency filtering (unless rejected)."""
        return (key, norm) in self.mapping or self.approved(key, norm) is not None


def load_review_state(path: str | AnyPath, fold_plurals: bool = True) -> ReviewState:
    """Read the decisions file at ``path`` (missing: no decisions) into a :class:`ReviewState`."""
    store = DecisionStore(path)
    decisions = store.read()
    return ReviewState.from_decisions(decisions, fold_plurals=fold_plurals, skipped=store.skipped_)


def family_digest(path: str | AnyPath, families: Iterable[str]) -> str:
    """Digest of the decisions of the given families (and undos of them): a stage's fingerprint reads
    only the decisions that can change its result, so a pin does not rerun curation."""
    import hashlib

    wanted = set(families)
    decisions = DecisionStore(path).read()
    by_id = {d.id: d for d in decisions}
    kept = [asdict(d) for d in decisions
            if d.family in wanted or (d.action == UNDO and d.undoes in by_id and by_id[d.undoes].family in wanted)]
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
