#!/usr/bin/env bash
# A Docker engine and the runner image for the docker tests; idempotent (seconds when all is there).
#   source .ci/docker-setup.sh    # also exports AUTORESEARCH_REQUIRE_DOCKER=1 into the caller
#   .ci/docker-setup.sh           # the same, without the export
# Installs docker.io (and debootstrap, busybox-static) if missing, starts dockerd if no engine
# answers and waits for it, then builds autoresearch-runner:local if missing (runner-image/build-local.sh).

_autoresearch_docker_setup() (
  set -euo pipefail
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v busybox >/dev/null || need+=(busybox-static)
  if [ ${#need[@]} -gt 0 ]; then
    echo "docker-setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "docker-setup: starting dockerd (log: /tmp/dockerd.log)"
    setsid dockerd >/tmp/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "docker-setup: dockerd did not start:"; tail -20 /tmp/dockerd.log; exit 1; }
  fi
  "$root/runner-image/build-local.sh"
)

if _autoresearch_docker_setup; then
  export AUTORESEARCH_REQUIRE_DOCKER=1
else
  echo "docker-setup: failed" >&2
  # shellcheck disable=SC2317  # return when sourced, exit when run
  return 1 2>/dev/null || exit 1
fi
