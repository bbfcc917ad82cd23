"""pydantic models through the default JSON serializer: inputs, step results and hook payloads."""

from __future__ import annotations

import datetime as dt
import enum
import json
import time
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, RootModel

from pyworkflow import (
    RunStatus,
    create_hook,
    get_result,
    get_run,
    resume_hook,
    start,
    step,
    workflow,
)
from pyworkflow.errors import SerializationError
from pyworkflow.serialization import JsonSerializer

JSON = JsonSerializer()


class Tier(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Address(BaseModel):
    street: str
    city: str


class Customer(BaseModel):
    id: uuid.UUID
    name: str
    joined: dt.datetime
    birthday: dt.date | None = None
    tier: Tier = Tier.FREE
    balance: Decimal = Decimal("0")
    address: Address
    previous: list[Address] = []
    tags: frozenset[str] = frozenset()
    pair: tuple[int, str] = (0, "")
    scores: dict[str, float] = {}
    anything: Any = None


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)
    at: dt.time
    wait: dt.timedelta


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    known: int


class Aliased(BaseModel):
    user_name: str = Field(alias="userName")
    count: int = 0


class WithPrivate(BaseModel):
    value: int
    _cache: dict[str, int] = pydantic.PrivateAttr(default_factory=dict)


class Addresses(RootModel[list[Address]]):
    pass


def customer() -> Customer:
    return Customer(
        id=uuid.UUID(int=42),
        name="Ana",
        joined=dt.datetime(2024, 3, 1, 9, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Lisbon")),
        birthday=dt.date(1990, 5, 17),
        tier=Tier.PRO,
        balance=Decimal("12.50"),
        address=Address(street="Rua A", city="Porto"),
        previous=[Address(street="Rua B", city="Lisboa"), Address(street="Rua C", city="Braga")],
        tags=frozenset({"vip", "early"}),
        pair=(7, "x"),
        scores={"q1": 1.5},
        anything={"nested": (1, b"raw")},
    )


def roundtrip(value: Any) -> Any:
    return JSON.loads(JSON.dumps(value))


def test_model_with_datetime_uuid_nested_and_lists_roundtrips_to_an_equal_value() -> None:
    original = customer()
    back = roundtrip(original)
    assert back == original
    assert type(back) is Customer
    assert type(back.address) is Address
    assert [type(a) for a in back.previous] == [Address, Address]
    assert type(back.id) is uuid.UUID and type(back.balance) is Decimal
    assert back.joined.tzinfo == zoneinfo.ZoneInfo("Europe/Lisbon")
    assert type(back.tags) is frozenset and type(back.pair) is tuple
    assert back.anything == {"nested": (1, b"raw")}  # Any fields keep their runtime types
    assert back.model_fields_set == original.model_fields_set


def test_payload_is_tagged_json_with_the_class_path() -> None:
    text = JSON.dumps(Address(street="s", city="c"))
    assert json.loads(text) == {
        "__pw__": "pydantic",
        "t": "tests.test_serialization_pydantic:Address",
        "v": {"street": "s", "city": "c"},
    }


@pytest.mark.parametrize(
    "value",
    [
        Frozen(at=dt.time(10, 5), wait=dt.timedelta(minutes=3)),
        Open(known=1, extra_field=[1, 2], other={"a": None}),
        Aliased(userName="ana"),
        Addresses([Address(street="s", city="c")]),
        [Address(street="s", city="c"), {"k": Address(street="t", city="d")}],
        (Address(street="s", city="c"),),
    ],
    ids=["frozen", "extra-allow", "alias", "root-model", "in-containers", "in-tuple"],
)
def test_other_model_shapes_roundtrip(value: Any) -> None:
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)


def test_fields_set_is_kept_for_exclude_unset() -> None:
    partial = Aliased(userName="ana")  # count left to its default
    back = roundtrip(partial)
    assert back.model_fields_set == {"user_name"}
    assert back.model_dump(exclude_unset=True) == {"user_name": "ana"}
    assert roundtrip(Open(known=1, x=2)).model_extra == {"x": 2}


def test_private_attributes_get_their_defaults() -> None:
    model = WithPrivate(value=3)
    model._cache["k"] = 1
    back = roundtrip(model)
    assert back.value == 3 and back._cache == {}


def test_a_field_added_since_the_value_was_stored_gets_its_default() -> None:
    stored = json.dumps(
        {
            "__pw__": "pydantic",
            "t": "tests.test_serialization_pydantic:Aliased",
            "v": {"user_name": "bo"},
        }
    )
    assert JSON.loads(stored) == Aliased(userName="bo", count=0)


def test_model_defined_in_a_function_is_refused_at_dumps() -> None:
    class Local(BaseModel):
        x: int

    with pytest.raises(SerializationError, match="define it at module level"):
        JSON.dumps(Local(x=1))


def test_a_class_path_that_is_not_a_model_is_refused_at_loads() -> None:
    text = json.dumps({"__pw__": "pydantic", "t": "builtins:int", "v": {}})
    with pytest.raises(SerializationError, match="not a pydantic model"):
        JSON.loads(text)


# ----- through a run: workflow input, step result, hook payload -----


@step()
async def upgrade(person: Customer) -> Customer:
    assert type(person) is Customer and type(person.address) is Address
    return person.model_copy(update={"tier": Tier.PRO, "name": person.name.upper()})


@workflow(name="pydantic_tests.upgrade")
async def upgrade_flow(person: Customer) -> dict[str, Any]:
    upgraded = await upgrade(person)
    moved = await create_hook(token=f"move:{person.id}", schema=Address)
    return {"customer": upgraded.model_copy(update={"address": moved}), "moved": moved}


def test_models_as_input_step_result_and_hook_payload(pw: str) -> None:
    person = customer().model_copy(update={"tier": Tier.FREE})
    run_id = start(upgrade_flow, person)
    deadline = time.monotonic() + 10
    while get_run(run_id).status != RunStatus.SUSPENDED:
        assert time.monotonic() < deadline, get_run(run_id).status
        time.sleep(0.02)
    resume_hook(f"move:{person.id}", {"street": "Rua Nova", "city": "Faro"})
    result = get_result(run_id, timeout=10)
    moved = Address(street="Rua Nova", city="Faro")
    assert result["moved"] == moved and type(result["moved"]) is Address
    expected = person.model_copy(update={"tier": Tier.PRO, "name": "ANA", "address": moved})
    assert result["customer"] == expected
    assert type(result["customer"]) is Customer
