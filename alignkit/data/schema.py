"""The preference record and its validation.

A record (architecture.md, "Data contract")::

    {"prompt": str | messages, "chosen": str | messages, "rejected": str | messages,
     "h_w": 0|1, "h_l": 0|1, "flipped": bool, "source": str, "id": str, ...extra keys carried through}

``messages`` is TRL's conversational format: a list of ``{"role": str, "content": str}``. ``h_w``/``h_l`` are
hallucination flags (1 = hallucinated) for the chosen and the rejected response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEXT_FIELDS = ("prompt", "chosen", "rejected")
FLAG_FIELDS = ("h_w", "h_l")
_ROLES = {"system", "user", "assistant", "tool"}


class DataError(ValueError):
    """A bad record, located by file, line (1-based) and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{prefix}{fld}{message}")

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Problem:
    field: str | None
    reason: str


def _text_of(value: Any) -> str:
    """The concatenated text of a string or a message list (for emptiness/equality checks)."""
    if isinstance(value, str):
        return value
    return "\n".join(f"{m.get('role')}:{m.get('content')}" for m in value)


def _check_text(field: str, value: Any) -> Problem | None:
    if isinstance(value, str):
        if not value.strip():
            return Problem(field, "empty text")
        return None
    if isinstance(value, list):
        if not value:
            return Problem(field, "empty message list")
        for i, msg in enumerate(value):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or "content" not in msg:
                return Problem(field, f"message {i} must be an object with string 'role' and 'content'")
            if msg["role"] not in _ROLES:
                return Problem(field, f"message {i} has unknown role {msg['role']!r}")
            if not isinstance(msg["content"], str):
                return Problem(field, f"message {i} content must be a string, got {type(msg['content']).__name__}")
            if msg["role"] != "system" and not msg["content"].strip():
                return Problem(field, f"message {i} has empty content")
        return None
    return Problem(field, f"must be a string or a list of chat messages, got {type(value).__name__}")


def record_problems(record: Any, *, require_flags: bool = True) -> list[Problem]:
    """Every problem with one record (an empty list means valid). Pure; never raises."""
    if not isinstance(record, dict):
        return [Problem(None, f"record must be a JSON object, got {type(record).__name__}")]
    problems: list[Problem] = []
    for field in TEXT_FIELDS:
        if field not in record:
            problems.append(Problem(field, "missing"))
        else:
            p = _check_text(field, record[field])
            if p:
                problems.append(p)
    if not problems:
        kinds = {type(record[f]) for f in TEXT_FIELDS[1:]}
        if len(kinds) > 1:
            problems.append(Problem("rejected", "chosen and rejected mix chat messages and plain strings"))
        elif _text_of(record["chosen"]).strip() == _text_of(record["rejected"]).strip():
            problems.append(Problem("rejected", "chosen == rejected"))
    for field in FLAG_FIELDS:
        if field not in record:
            if require_flags:
                problems.append(Problem(field, "missing"))
            continue
        v = record[field]
        # bool is an int subclass: True/False are rejected so that a flag is always an explicit 0 or 1.
        if isinstance(v, bool) or not isinstance(v, int):
            problems.append(Problem(field, f"must be 0 or 1 (integer), got {v!r}"))
        elif v not in (0, 1):
            problems.append(Problem(field, f"must be 0 or 1, got {v}"))
    if "flipped" in record and not isinstance(record["flipped"], bool):
        problems.append(Problem("flipped", f"must be true or false, got {record['flipped']!r}"))
    for field in ("id", "source"):
        if field in record and not isinstance(record[field], str):
            problems.append(Problem(field, f"must be a string, got {type(record[field]).__name__}"))
    return problems


def validate_record(record: Any, *, file: str | None = None, line: int | None = None,
                    require_flags: bool = True) -> dict:
    """Return ``record`` if valid, else raise :class:`DataError` for its first problem."""
    problems = record_problems(record, require_flags=require_flags)
    if problems:
        p = problems[0]
        raise DataError(p.reason, file=file, line=line, field=p.field)
    return record


def is_conversational(record: dict) -> bool:
    return isinstance(record.get("chosen"), list)


def bucket(record: dict) -> tuple[int, int]:
    """The (h_w, h_l) bucket of a labelled record."""
    return int(record["h_w"]), int(record["h_l"])
