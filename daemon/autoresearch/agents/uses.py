"""Which constants only feed what a script prints: changing them cannot change the metric.

A use of a name is *display-only* when its value ends up only in ``print(...)``, a logging call or an
f-string, directly or through plain arithmetic assigned to variables that are themselves display-only
(``mfu = flops / PEAK_FLOPS`` then ``print(f"mfu: {mfu}")``). Anything else counts as a real use: a call
other than a few pure builtins, a condition, an ``assert``, a ``return``, an index into a container.
The analysis ignores scopes (a name is any ``Name`` node of that spelling), which errs towards *real*.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Callable

DISPLAY_FUNCS = frozenset({"print"})
DISPLAY_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
"""Methods of a logger-like receiver (a name containing ``log``, or ``wandb``)."""
PURE_BUILTINS = frozenset({"int", "float", "round", "abs", "min", "max", "str", "format"})


def display_only(source: str, names: set[str], judged: tuple[str, ...] = ()) -> set[str]:
    """The names among ``names`` that are used, and used only for display.

    A print of a line the daemon parses (``<judged>: value``, e.g. the metric) is no display: the
    constants that feed it are what the research is about."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {}
    loads: dict[str, list[ast.Name]] = defaultdict(list)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loads[node.id].append(node)
    memo: dict[str, bool] = {}

    def only_display(name: str) -> bool:
        if name not in memo:
            memo[name] = True  # a cycle (x = x + C) adds nothing new: assume yes while deciding
            memo[name] = all(_display_use(use, parents, only_display, judged) for use in loads[name])
        return memo[name]

    return {n for n in names if loads[n] and only_display(n)}


def _display_use(
    node: ast.AST, parents: dict[ast.AST, ast.AST], only_display: Callable[[str], bool], judged: tuple[str, ...]
) -> bool:
    child, parent = node, parents.get(node)
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.JoinedStr):
            return not _prints_judged(parent, judged)
        if isinstance(parent, ast.Call):
            if child is parent.func:
                return False
            if _is_display_call(parent):
                return not _prints_judged(parent, judged)
            if not (isinstance(parent.func, ast.Name) and parent.func.id in PURE_BUILTINS):
                return False
        elif isinstance(parent, ast.Lambda | ast.NamedExpr | ast.comprehension | ast.Subscript):
            return False
        child, parent = parent, parents.get(parent)
    return _flows_to_display(parent, child, only_display)


def _flows_to_display(stmt: ast.AST | None, child: ast.AST, only_display: Callable[[str], bool]) -> bool:
    """At the statement: a value assigned to plain names is display-only when those names are."""
    if isinstance(stmt, ast.Assign) and child is stmt.value:
        targets = [t for t in stmt.targets if isinstance(t, ast.Name)]
        return len(targets) == len(stmt.targets) and all(only_display(t.id) for t in targets)
    if isinstance(stmt, ast.AugAssign | ast.AnnAssign) and child is stmt.value and isinstance(stmt.target, ast.Name):
        return bool(only_display(stmt.target.id))
    return False


def _prints_judged(node: ast.AST, judged: tuple[str, ...]) -> bool:
    """Whether the text printed here has a ``<name>:`` label the daemon reads."""
    texts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return any(re.search(rf"(?<![\w.]){re.escape(name)}\s*:", text) for name in judged for text in texts)


def _is_display_call(call: ast.Call) -> bool:
    """print(...), a logger's methods (log.info, logger.warning, wandb.log), sys.stdout/stderr.write."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in DISPLAY_FUNCS
    if not isinstance(func, ast.Attribute):
        return False
    receiver = _last_name(func.value)
    if func.attr == "write":
        return receiver in ("stdout", "stderr")
    # math.log(x) is arithmetic: the receiver must look like a logger.
    return func.attr in DISPLAY_METHODS and ("log" in receiver.lower() or receiver == "wandb")


def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""
