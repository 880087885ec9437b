"""The sample agent's two tools: a calculator and a fake user-profile lookup.

Both are pure and deterministic: the calculator evaluates arithmetic through a whitelist of AST
nodes (never ``eval``), and the profile lookup reads a fixed in-module table. Their Anthropic tool
definitions are stored as tool-schema blocks, so the model sees exactly what the store holds.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.blocks import ToolResult, canonical_json


def tool_schema(name: str, description: str, param: str, example: str = "") -> dict[str, Any]:
    """Return a Messages tool definition taking one required string ``param``."""
    prop: dict[str, str] = {"type": "string"}
    if example:
        prop["description"] = f"e.g. {example}"
    schema = {"type": "object", "properties": {param: prop}, "required": [param]}
    return {"name": name, "description": description, "input_schema": schema}


CALCULATOR = tool_schema(
    "calculator",
    "Evaluate an arithmetic expression with + - * / // % ** and parentheses.",
    "expression",
    "(12 + 3) * 7",
)
LOOKUP_PROFILE = tool_schema(
    "lookup_user_profile",
    "Look up a user's profile (name, tier, home airport, member since) by user id.",
    "user_id",
    "u-1001",
)

TOOL_DEFINITIONS = (CALCULATOR, LOOKUP_PROFILE)

_PROFILES = {
    "u-1001": {"name": "Ada Lovelace", "tier": "gold", "home_airport": "LHR", "member_since": 2015},
    "u-1002": {
        "name": "Alan Turing",
        "tier": "silver",
        "home_airport": "MAN",
        "member_since": 2019,
    },
    "u-1003": {
        "name": "Grace Hopper",
        "tier": "platinum",
        "home_airport": "JFK",
        "member_since": 2009,
    },
}

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPRESSION = 200


class ToolInputError(ValueError):
    """The model gave a tool input it cannot use; the message goes back as an error result."""


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ToolInputError("exponent too large (limit 64)")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ToolInputError(f"unsupported expression element: {type(node).__name__}")


def calculate(expression: str) -> str:
    """Return the value of an arithmetic expression as text."""
    if not isinstance(expression, str) or not expression.strip():
        raise ToolInputError("expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION:
        raise ToolInputError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        value = _evaluate(ast.parse(expression.strip(), mode="eval").body)
    except SyntaxError:
        raise ToolInputError(f"not an arithmetic expression: {expression!r}") from None
    except (ZeroDivisionError, OverflowError) as exc:
        raise ToolInputError(str(exc)) from None
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)
    return str(value)


def lookup_user_profile(user_id: str) -> str:
    """Return a user's profile as canonical JSON text."""
    profile = _PROFILES.get(str(user_id).strip())
    if profile is None:
        known = ", ".join(sorted(_PROFILES))
        raise ToolInputError(f"no user {user_id!r}; known ids: {known}")
    return canonical_json({"user_id": user_id, **profile}).decode()


@dataclass(frozen=True)
class ToolRunner:
    """Runs the sample tools by name and turns any failure into an error result."""

    def run(self, call_id: str, name: str, arguments: object) -> ToolResult:
        """Run tool ``name`` with ``arguments``; return its result (is_error on failure)."""
        args = arguments if isinstance(arguments, dict) else {}
        try:
            if name == CALCULATOR["name"]:
                return ToolResult(call_id, calculate(args.get("expression", "")))
            if name == LOOKUP_PROFILE["name"]:
                return ToolResult(call_id, lookup_user_profile(args.get("user_id", "")))
            raise ToolInputError(f"unknown tool {name!r}")
        except ToolInputError as exc:
            return ToolResult(call_id, f"error: {exc}", is_error=True)
