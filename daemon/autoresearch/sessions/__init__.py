"""Research sessions: one tag and branch each, their settings, the archive."""
