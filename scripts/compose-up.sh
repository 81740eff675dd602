#!/usr/bin/env bash
# The daemon under Docker Compose, from a clean clone: builds what compose.yaml needs, then `up`.
#
#   scripts/compose-up.sh [options of `compose up`, e.g. -d]
#
# Run it from the folder that holds (or will hold) research/ (compose.yaml mounts ${PWD}/research):
#   1. the runner image the demo's Docker runner trains in (runner-image/build-local.sh; skipped when
#      autoresearch-runner:local exists);
#   2. the daemon image (scripts/build-daemon-image.sh, tagged ${AUTORESEARCH_IMAGE:-autoresearch:local});
#   3. ./research, writable by the container's user: AUTORESEARCH_UID/AUTORESEARCH_GID default to yours
#      (10001, the image's user, when you are root; a folder made here is then handed to it);
#   4. DOCKER_GID, the group of /var/run/docker.sock;
# then `docker-compose up` (Debian's 1.29), or `docker compose up` where only the plugin is installed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "compose-up.sh: neither docker-compose nor the compose plugin is installed (apt-get install docker-compose)" >&2
  exit 1
fi

"$root/runner-image/build-local.sh"
"$root/scripts/build-daemon-image.sh" --tag "${AUTORESEARCH_IMAGE:-autoresearch:local}"

if [[ $(id -u) == 0 ]]; then
  export AUTORESEARCH_UID=${AUTORESEARCH_UID:-10001} AUTORESEARCH_GID=${AUTORESEARCH_GID:-10001}
else
  export AUTORESEARCH_UID=${AUTORESEARCH_UID:-$(id -u)} AUTORESEARCH_GID=${AUTORESEARCH_GID:-$(id -g)}
fi
if [[ ! -d research ]]; then
  mkdir research
  [[ $(id -u) != 0 ]] || chown "$AUTORESEARCH_UID:$AUTORESEARCH_GID" research
fi
sock=/var/run/docker.sock
[[ -S $sock ]] && export DOCKER_GID=${DOCKER_GID:-$(stat -c %g "$sock")}
export AUTORESEARCH_IMAGE=${AUTORESEARCH_IMAGE:-autoresearch:local}

exec "${compose[@]}" -f "$root/compose.yaml" up --no-build "$@"
