"""The sample agent's calculator and profile lookup."""

from __future__ import annotations

import json

import pytest

from runtime.agent.tools import ToolInputError, ToolRunner, calculate, lookup_user_profile


@pytest.mark.parametrize(
    ("expression", "value"),
    [("12*7", "84"), ("(1 + 2) * 3", "9"), ("7 / 2", "3.5"), ("-2 ** 3", "-8"), ("10 // 4", "2")],
)
def test_calculator_evaluates_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression", ["__import__('os')", "open('x')", "a + 1", "2 ** 1000", "1/0", "", "1 +"]
)
def test_calculator_refuses_anything_but_arithmetic(expression):
    with pytest.raises(ToolInputError):
        calculate(expression)


def test_profile_lookup_is_deterministic_json():
    assert json.loads(lookup_user_profile("u-1001"))["name"] == "Ada Lovelace"
    assert lookup_user_profile("u-1002") == lookup_user_profile("u-1002")
    with pytest.raises(ToolInputError, match="known ids"):
        lookup_user_profile("nobody")


def test_runner_turns_failures_into_error_results():
    runner = ToolRunner()
    ok = runner.run("t1", "calculator", {"expression": "2+2"})
    assert (ok.content, ok.is_error) == ("4", False)
    bad = runner.run("t2", "calculator", {"expression": "import os"})
    assert bad.is_error and bad.call_id == "t2"
    assert runner.run("t3", "weather", {}).is_error
