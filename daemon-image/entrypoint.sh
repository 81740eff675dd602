#!/bin/sh
# Entrypoint of the daemon image (under tini).
#   with arguments:    run them, e.g. `docker run IMAGE autoresearch status /research`
#   without arguments: `autoresearch run $AUTORESEARCH_REPO` when that folder holds a research repo
#                      (autoresearch.toml), else the demo on the bundled example in $AUTORESEARCH_REPO/demo.
set -eu

if [ "$#" -gt 0 ]; then
  exec "$@"
fi

repo=${AUTORESEARCH_REPO:-/research}
if [ -f "$repo/autoresearch.toml" ]; then
  exec autoresearch run "$repo"
fi

demo=$repo/demo
if ! { [ -d "$repo" ] && [ -w "$repo" ]; } && [ ! -w "$demo" ]; then
  # Docker creates a missing bind-mount source as root, which this non-root user cannot write: the demo
  # still runs, but in the container only. Say how to keep it.
  echo "autoresearch: $repo is not writable by uid $(id -u); running the demo in /tmp/demo (lost with the container)." >&2
  echo "autoresearch: to keep it: chown $(id -u) the research folder, or set AUTORESEARCH_UID/AUTORESEARCH_GID to its owner." >&2
  demo=/tmp/demo
fi
exec autoresearch demo "$demo"
