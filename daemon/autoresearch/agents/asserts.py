"""The target's own module-level checks between its constants, evaluated on a proposal before it is made.

karpathy's train.py says ``tokens_per_fwdbwd = DEVICE_BATCH_SIZE * MAX_SEQ_LEN`` then ``assert
TOTAL_BATCH_SIZE % tokens_per_fwdbwd == 0``, with ``MAX_SEQ_LEN`` from ``from prepare import ...``. The
sweep must not propose a file that fails such an assert (the run would crash at once). This module walks
the file's top-level statements in order, keeps the value of every name it can work out (numeric literals,
arithmetic, comparisons, ``int``/``float``/``min``/``max``/``abs``/``round``, and constants imported from
the repo's own modules, read-only files included), forgets a name as soon as something it cannot follow
assigns it, and evaluates each top-level ``assert`` whose names are all known. What it cannot evaluate it
leaves alone: an assert on a tensor is the run's business.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

ReadModule = Callable[[str], str | None]
"""The source of a top-level module of the repo by name (``prepare`` -> prepare.py), or None."""

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}  # fmt: skip
_CALLS: dict[str, Callable[..., Any]] = {"int": int, "float": float, "min": min, "max": max, "abs": abs,
                                         "round": round}
STRUCTURAL_OPS = (ast.Mult, ast.Mod, ast.FloorDiv)
"""A constant that is an operand of these (a product, a divisibility check) keeps its power of two."""


class Unknown(Exception):
    """The expression uses something this evaluator does not follow."""


def evaluate(node: ast.expr, env: dict[str, Any]) -> Any:
    """The value of ``node`` from known names; ``Unknown`` otherwise. Arithmetic errors propagate."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise Unknown(node.id)
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
        value = evaluate(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else (not value if isinstance(node.op, ast.Not) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = evaluate(node.left, env), evaluate(node.right, env)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise Unknown("huge power")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = evaluate(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = evaluate(comparator, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        values = [evaluate(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS
            and node.func.id not in env and not node.keywords):
        return _CALLS[node.func.id](*(evaluate(a, env) for a in node.args))
    raise Unknown(type(node).__name__)


def failed_asserts(source: str, read_module: ReadModule) -> list[str]:
    """The top-level asserts of ``source`` that fail (their source text), given what can be evaluated."""
    failed: list[str] = []
    _walk(ast.parse(source), read_module, failed)
    return failed


def module_constants(source: str) -> dict[str, Any]:
    """The names a module's top-level statements bind to values this evaluator can work out."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    return _walk(tree, lambda _name: None, [])


def _walk(tree: ast.Module, read_module: ReadModule, failed: list[str]) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
            text = read_module(stmt.module)
            known = module_constants(text) if text is not None else {}
            for alias in stmt.names:
                _bind(env, alias.asname or alias.name, ast.Name(alias.name), known)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            _bind(env, stmt.targets[0].id, stmt.value, env)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            _bind(env, stmt.target.id, stmt.value, env)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            _bind(env, name, ast.BinOp(ast.Name(name), stmt.op, stmt.value), env)
        elif isinstance(stmt, ast.Assert):
            _check(stmt, env, failed)
        else:
            for name in _stored_names(stmt):
                env.pop(name, None)  # assigned in a way we do not follow: no longer known
    return env


def _bind(env: dict[str, Any], name: str, expr: ast.expr, scope: dict[str, Any]) -> None:
    """``name = expr`` evaluated in ``scope``: known from now on if it is a finite number, else forgotten."""
    try:
        value = evaluate(expr, scope)
    except (Unknown, ArithmeticError, TypeError, ValueError):
        env.pop(name, None)
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        env.pop(name, None)
    else:
        env[name] = value


def _check(stmt: ast.Assert, env: dict[str, Any], failed: list[str]) -> None:
    try:
        holds = bool(evaluate(stmt.test, env))
    except Unknown:
        return
    except (ArithmeticError, TypeError, ValueError):
        holds = False  # e.g. a modulo by zero: the script would raise right there
    if not holds:
        failed.append(ast.unparse(stmt.test))


def _stored_names(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    if isinstance(stmt, ast.Import):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    if isinstance(stmt, ast.ImportFrom):
        return {a.asname or a.name for a in stmt.names}
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def structural_names(source: str) -> set[str]:
    """Names used as an operand of a product or a divisibility check anywhere in ``source``: an int
    constant among them that is a power of two stays one; any other int may take any value."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, STRUCTURAL_OPS):
            found |= {side.id for side in (node.left, node.right) if isinstance(side, ast.Name)}
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, STRUCTURAL_OPS):
            found |= {side.id for side in (node.target, node.value) if isinstance(side, ast.Name)}
    return found
