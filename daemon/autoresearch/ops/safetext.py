"""Text from an agent or a run made safe to show: no control or format characters.

A description is written by an LLM or a CLI the daemon does not trust. Before it reaches git (a NUL
made ``commit-tree -m`` raise, on every restart), results.tsv, the logs or a terminal (ESC sequences
rewrite the screen; bidi overrides make a row read differently from what it holds), every character
of Unicode category Cc (controls: NUL, ESC, DEL, C1), Cf (format: bidi overrides and isolates,
zero-width characters, soft hyphen) and Cs (lone surrogates, which no UTF-8 file can hold) goes.
Whitespace controls (tab, newline, carriage return) become a space, so words stay apart.
"""

from __future__ import annotations

import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Cs"})
_SPACES = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` without control, format and surrogate characters; whitespace controls become spaces
    (newlines stay with ``keep_newlines``: a commit message's paragraphs)."""
    out = []
    for ch in text:
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif ch in _SPACES:
            out.append(" ")
        elif (ch.isascii() and ch.isprintable()) or unicodedata.category(ch) not in _UNSAFE:
            out.append(ch)
    return "".join(out)


def one_line(text: str) -> str:
    """``printable`` on one line, runs of whitespace collapsed: a description, a TSV cell."""
    return " ".join(printable(text).split())
