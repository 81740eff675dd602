"""A run's environment from an allow-list: the one copy of that rule, for every runner and sandbox.

Nothing of the daemon's environment enters a run unless named in ``allow``; secrets never do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET = re.compile(r"ANTHROPIC|API_KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
"""Names never passed into a run, whatever the configuration says (the agent's and the host's keys)."""


def allowed_environment(
    spec_env: Mapping[str, str],
    host_env: Mapping[str, str],
    allow: Iterable[str],
    extra: Mapping[str, str] = {},
    fixed: Mapping[str, str] = {},
    *,
    drop_secrets: bool = True,
) -> dict[str, str]:
    """``allow``-listed host variables, the run's AUTORESEARCH_* (and allowed) variables, the config's
    ``extra``, then ``fixed`` (the runner's own: HOME, paths); any secret-looking name is dropped unless
    ``drop_secrets`` is False (an agent CLI's own API key, which its allow-list names explicitly)."""
    allowed = set(allow)
    env = {k: v for k, v in host_env.items() if k in allowed}
    env.update({k: v for k, v in spec_env.items() if k.startswith("AUTORESEARCH_") or k in allowed})
    env.update(extra)
    env.update(fixed)
    return {k: v for k, v in env.items() if not (drop_secrets and SECRET.search(k))}
