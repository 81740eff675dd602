"""Find and rewrite a Python file's module-level UPPER_CASE numeric constants, touching nothing else."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

FIXED_MARK = re.compile(r"#.*\bautoresearch:\s*fixed\b", re.IGNORECASE)
"""A comment on a constant's line that keeps the offline sweep away from it."""


@dataclass(frozen=True)
class Constant:
    name: str
    value: int | float
    line: int
    """1-based line of the literal."""
    start: int
    end: int
    """Column span (in characters) of the literal on its line."""
    power_form: bool = False
    """Written as ``2**k``; a new value is written the same way."""
    fixed: bool = False
    """Its line carries a ``# autoresearch: fixed`` comment."""


def find_constants(source: str) -> dict[str, Constant]:
    """Module-level ``NAME = <int or float literal>`` assignments (a leading minus, or ``2**k``, is allowed)."""
    found: dict[str, Constant] = {}
    lines = source.splitlines()
    for node in ast.parse(source).body:
        target, value = _simple_assignment(node)
        if target is None or value is None or not target.isupper():
            continue
        number = _number(value)
        if number is None or value.end_lineno != value.lineno or value.end_col_offset is None:
            continue
        rest = lines[value.lineno - 1].encode()[value.end_col_offset :].decode(errors="replace")
        found[target] = Constant(
            target, number, value.lineno, value.col_offset, value.end_col_offset,
            power_form=isinstance(value, ast.BinOp), fixed=FIXED_MARK.search(rest) is not None,
        )  # fmt: skip
    return found


def _simple_assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None, None


def _number(node: ast.expr) -> int | float | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exponent = _literal(node.left), _literal(node.right)
        if base == 2 and isinstance(exponent, int) and 0 <= exponent <= 62:
            return int(2**exponent)
        return None
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        sign, node = -1, node.operand
    number = _literal(node)
    return None if number is None else sign * number


def _literal(node: ast.expr) -> int | float | None:
    value = node.value if isinstance(node, ast.Constant) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def format_value(value: int | float, like: int | float) -> str:
    """A literal of the same type as ``like``: ints stay ints, floats stay floats (3 significant digits)."""
    if isinstance(like, int):
        return str(round(value))
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value} as a constant")
    text = f"{value:.3g}"
    return text if any(c in text for c in ".e") else text + ".0"


def literal(const: Constant, value: int | float) -> str:
    """The source text of ``value`` for ``const``, in its form: ``2**k`` stays ``2**k``."""
    if const.power_form and isinstance(value, int) and value > 0 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return format_value(value, const.value)


def rewrite(source: str, new_values: dict[str, str]) -> str:
    """Replace the literals of the named constants with the given source texts, byte for byte elsewhere."""
    constants = find_constants(source)
    lines = source.splitlines(keepends=True)
    # Work right to left within a line so earlier column offsets stay valid.
    edits = sorted((constants[name] for name in new_values), key=lambda c: (c.line, -c.start))
    for const in edits:
        line = lines[const.line - 1]
        # ast offsets count UTF-8 bytes; constants sit in ASCII code, but convert to be safe.
        raw = line.encode()
        raw = raw[: const.start] + new_values[const.name].encode() + raw[const.end :]
        lines[const.line - 1] = raw.decode()
    return "".join(lines)
