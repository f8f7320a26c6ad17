"""Operator implementations, one registry (:data:`OPERATORS`)."""

from __future__ import annotations

from synthlang.ops.base import Operator, Option, OutputField, RowFailure
from synthlang.ops.core import ANSWER, GENERATE, REPHRASE, VERIFY

OPERATORS: dict[str, Operator] = {op.name: op for op in (GENERATE, REPHRASE, ANSWER, VERIFY)}

__all__ = ["OPERATORS", "Operator", "Option", "OutputField", "RowFailure"]
