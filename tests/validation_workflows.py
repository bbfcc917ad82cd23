"""Hook schemas of every kind, and workflows that wait on them (module level: importable by ref)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from typing import Any, Literal, NotRequired, TypedDict

import attrs
import pydantic

from pyworkflow import create_hook, workflow

# ----- schemas -----


@attrs.frozen
class Decision:
    """The issue's example: ``{"approved": "no"}`` must not become ``approved=True``."""

    approved: bool
    by: str


@attrs.frozen
class Review:
    """Nested record, a float, a list and optional fields with defaults."""

    decision: Decision
    score: float
    tags: list[str] = attrs.field(factory=list)
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = ""


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Order(TypedDict):
    id: str
    qty: int
    note: NotRequired[str]


class Flags(TypedDict, total=False):
    a: int
    b: bool


@attrs.frozen
class Stamped:
    """Every type JSON has no form for, read from text (or a number, for Decimal)."""

    when: dt.datetime
    day: dt.date
    at: dt.time
    wait: dt.timedelta
    id: uuid.UUID
    amount: decimal.Decimal


@attrs.frozen
class Tree:
    """A record that contains itself."""

    name: str
    children: list[Tree] = attrs.field(factory=list)


class Attendee(pydantic.BaseModel):
    name: str
    vip: bool = False


class Meeting(pydantic.BaseModel):
    title: str
    seats: int
    length: float
    attendees: list[Attendee]
    room: str | None = None


class Slot(pydantic.BaseModel):
    at: dt.datetime
    id: uuid.UUID


# ----- workflows -----


@workflow(name="validation_tests.decide")
async def decide(token: str) -> dict[str, Any]:
    decision = await create_hook(token=token, schema=Decision)
    return {"is_decision": type(decision) is Decision, "decision": decision}


#: Schemas the ``typed`` workflow can wait on, by name (workflow inputs must be JSON).
SCHEMAS: dict[str, Any] = {
    "list[str]": list[str],
    "dict[str, int]": dict[str, int],
    "Literal": Literal["yes", "no"],
    "Optional[Point]": Point | None,
    "Order": Order,
    "Meeting": Meeting,
    "Stamped": Stamped,
    "Color": Color,
}


@workflow(name="validation_tests.typed")
async def typed(token: str, schema: str) -> Any:
    return await create_hook(token=token, schema=SCHEMAS[schema])


@workflow(name="validation_tests.local_schema")
async def local_schema(token: str) -> Any:
    @attrs.frozen
    class Local:
        x: int

    return await create_hook(token=token, schema=Local)


@workflow(name="validation_tests.unsupported_schema")
async def unsupported_schema(token: str) -> Any:
    return await create_hook(token=token, schema=bytes)
