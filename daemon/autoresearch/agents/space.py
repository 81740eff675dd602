"""The offline sweep's search space: one range per constant, shaped so proposals stay valid.

Rules (decided once per constant from its name and first value; see README "offline agent"):
- ``pow2``: a positive int that is a power of two (2 and up) and is an operand of a product or a
  divisibility check in the file (``asserts.structural_names``), or written ``2**k``, stays one: the
  sweep moves its exponent. Divisibility between such constants (HEAD_DIM into the model width, the
  device batch into the total batch) then holds by construction. Any other int (``DEPTH``) is an ``int``.
- ``ratio``: a float in [0, 1] named like a ratio (``*_RATIO``, ``*_FRAC``, ``DROPOUT``, ``*_PROB``,
  ``*_MOMENTUM``, ``*_BETA``...) stays in [0, 1].
- ``int``: other ints stay ints; ``float``: other floats, on a log scale when positive.
- A crash of a change of several constants bars that combination of values (``barred``).
- A value that crashed narrows its constant's range: a run that changed one constant and crashed bars
  that value and everything beyond it, in the direction it moved. The bound is learned from the journal's
  history on every proposal, so it survives restarts. A later run that succeeded at or beyond the value
  lifts it (the crash was then something else).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from autoresearch.agents.base import HistoryEntry

Spec = dict[str, Any]
"""JSON-able: kind (int, float, pow2, ratio), low, high (values, also for pow2), log."""

RULES_VERSION = 3
"""Kept in the agent state with the space; a space built by older rules is rebuilt."""
RATIO_WORDS = frozenset(
    {"RATIO", "FRAC", "FRACTION", "DROPOUT", "DROP", "PROB", "PROBABILITY", "MOMENTUM", "BETA", "BETA1",
     "BETA2", "SMOOTHING", "PORTION", "SHARE"}
)  # fmt: skip
NOT_THE_VALUES_FAULT = ("interrupted", "docker")
"""Crash causes that say nothing about the constants (the daemon or the engine died)."""
MARGIN = 0.01
"""How far inside a crashed float value the new bound sits, so 3-digit rounding cannot reach it."""


def is_power_of_two(value: int | float) -> bool:
    return isinstance(value, int) and value >= 2 and value & (value - 1) == 0


def kind_of(name: str, value: int | float, structural: set[str] | None = None) -> str:
    """``structural``: the names that keep a power of two (None: every power-of-two int does)."""
    if is_power_of_two(value) and (structural is None or name in structural):
        return "pow2"
    if isinstance(value, int):
        return "int"
    if 0.0 <= value <= 1.0 and RATIO_WORDS & set(name.split("_")):
        return "ratio"
    return "float"


def build_space(
    current: Mapping[str, int | float], spread: float, structural: set[str] | None = None
) -> dict[str, Spec]:
    return {name: _spec(name, value, spread, structural) for name, value in current.items()}


def _spec(name: str, value: int | float, spread: float, structural: set[str] | None = None) -> Spec:
    kind = kind_of(name, value, structural)
    if kind == "pow2":
        low = max(1, 2 ** math.ceil(math.log2(value / spread)))
        high = max(2 ** math.floor(math.log2(value * spread)), 2 * int(value))
        return {"kind": kind, "low": low, "high": high, "log": True}
    if value == 0:
        return {"kind": kind, "low": 0, "high": 4 if kind == "int" else 0.5, "log": False}
    a, b = value / spread, value * spread
    low, high, log = min(a, b), max(a, b), value > 0
    if kind == "ratio":
        high = min(high, 1.0)
    if kind == "int":
        low, high = math.floor(low), max(math.ceil(high), int(value) + 1)
        low = max(low, 1) if log else low
    return {"kind": kind, "low": low, "high": high, "log": log}


def narrowed(space: Mapping[str, Spec], history: Iterable[HistoryEntry]) -> dict[str, Spec]:
    """The space with every crashed value (and what lies beyond it) cut off."""
    history = list(history)
    live = {name: dict(spec) for name, spec in space.items()}
    for entry in history:
        changed = entry.meta.get("changed")
        if entry.status != "crash" or entry.cause in NOT_THE_VALUES_FAULT or not isinstance(changed, dict):
            continue
        if len(changed) != 1:
            continue  # two constants moved together: the crash cannot be pinned on either
        ((name, move),) = changed.items()
        if name not in live or not _is_move(move) or _survived(history, name, move):
            continue
        old, new = move
        spec = live[name]
        if new > old:
            spec["high"] = min(spec["high"], _step(spec, new, -1))
        else:
            spec["low"] = max(spec["low"], _step(spec, new, +1))
    return live


def barred(history: Iterable[HistoryEntry]) -> list[dict[str, int | float]]:
    """The value combinations of crashed changes of several constants: none of them is to blame alone,
    but together they crashed, so the same combination is not proposed again (unless it later ran)."""
    entries = list(history)
    ran = [e.meta["params"] for e in entries if e.status != "crash" and isinstance(e.meta.get("params"), dict)]
    out: list[dict[str, int | float]] = []
    for entry in entries:
        changed = entry.meta.get("changed")
        if entry.status != "crash" or entry.cause in NOT_THE_VALUES_FAULT or not isinstance(changed, dict):
            continue
        if len(changed) < 2 or not all(_is_move(m) for m in changed.values()):
            continue
        combo = {name: move[1] for name, move in changed.items()}
        if not any(all(params.get(n) == v for n, v in combo.items()) for params in ran):
            out.append(combo)
    return out


def _is_move(move: Any) -> bool:
    return isinstance(move, list) and len(move) == 2 and all(isinstance(v, int | float) for v in move)


def _survived(history: list[HistoryEntry], name: str, move: list[int | float]) -> bool:
    """A run that did not crash with the value at or beyond the crashed one."""
    old, new = move
    for entry in history:
        value = (entry.meta.get("params") or {}).get(name) if isinstance(entry.meta.get("params"), dict) else None
        if entry.status == "crash" or not isinstance(value, int | float):
            continue
        if (new > old and value >= new) or (new < old and value <= new):
            return True
    return False


def _step(spec: Spec, value: int | float, direction: int) -> int | float:
    """The nearest allowed value next to ``value`` in ``direction`` (+1 up, -1 down)."""
    if spec["kind"] == "pow2":
        return int(value) * 2 if direction > 0 else max(1, int(value) // 2)
    if spec["kind"] == "int":
        return int(value) + direction
    return value + direction * max(abs(value) * MARGIN, 1e-12)


def has_room(spec: Spec) -> bool:
    return bool(spec["low"] < spec["high"])


def distribution(spec: Spec) -> Any:
    """The Optuna distribution: a pow2 constant is searched over its exponent."""
    import optuna

    if spec["kind"] == "pow2":
        low, high = _exponent(spec["low"]), _exponent(spec["high"])
        return optuna.distributions.IntDistribution(low, high)
    if spec["kind"] == "int":
        return optuna.distributions.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec["log"]))
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec["log"]))


def to_param(spec: Spec, value: Any) -> int | float | None:
    """A file's value as the distribution's parameter, or None when it lies outside the space."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not spec["low"] <= value <= spec["high"]:
        return None
    if spec["kind"] == "pow2":
        return _exponent(value) if isinstance(value, int) and value & (value - 1) == 0 else None
    return value


def from_param(spec: Spec, param: int | float) -> int | float:
    if spec["kind"] == "pow2":
        return int(2 ** int(param))
    return int(param) if spec["kind"] == "int" else float(param)


def _exponent(value: int | float) -> int:
    return int(value).bit_length() - 1
