"""``@step(resources=...)``: checked at declaration, carried by the step's definition."""

from __future__ import annotations

import pytest

from pyworkflow import Step, step


def test_resources_are_checked_and_carried() -> None:
    @step(resources={"num_cpus": 2, "num_gpus": 0.5, "accelerator": 1})
    async def train() -> None:
        return None

    assert dict(train.definition.resources or {}) == {
        "num_cpus": 2.0,
        "num_gpus": 0.5,
        "accelerator": 1.0,
    }

    class Embed(Step):
        resources = {"memory": 2e9}

        async def run(self) -> None:
            return None

    assert dict(Embed._definition.resources or {}) == {"memory": 2e9}


@pytest.mark.parametrize(
    ("resources", "error", "match"),
    [
        ([("num_cpus", 1)], TypeError, "must be a mapping"),
        ({"num_cpus": True}, ValueError, "non-negative number"),
        ({"num_cpus": "2"}, ValueError, "non-negative number"),
        ({"num_cpus": -1}, ValueError, "non-negative number"),
        ({"num_cpus": float("nan")}, ValueError, "non-negative number"),
        ({"": 1}, TypeError, "non-empty strings"),
    ],
)
def test_bad_resources_fail_at_declaration(
    resources: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        step(resources=resources)  # type: ignore[arg-type]
