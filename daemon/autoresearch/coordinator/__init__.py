"""The coordinator (the one writer) and what it drives: the loop, lanes, phases, drafts, limits."""
