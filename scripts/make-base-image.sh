#!/usr/bin/env bash
# Make a local Debian bookworm base image with Python 3.11, venv, git, CA certificates and tini, for
# hosts with no image registry (nothing can be pulled): debootstrap a minimal root file system and
# `docker import` it. The daemon's image builds on it (scripts/build-daemon-image.sh).
#
#   scripts/make-base-image.sh [--force] TAG
#
# Idempotent: an existing TAG is kept (debootstrap takes about a minute), unless --force.
# DEBIAN_MIRROR overrides the mirror (default: the first .../debian URI in /etc/apt/sources.list*).
set -euo pipefail

force=0
if [[ ${1:-} == --force ]]; then force=1; shift; fi
tag=${1:?usage: make-base-image.sh [--force] TAG}

if [[ $force == 0 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists; keeping it (--force rebuilds)"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  # The Debian mirror is reachable as a package source even where no image registry is.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

mirror=${DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  # Reuse the host's configured mirror (a proxy or a snapshot may be all that is reachable).
  mirror=$(grep -rhoE '(URIs:|^deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

rootfs=$(mktemp -d /tmp/autoresearch-rootfs.XXXXXX)
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
echo "debootstrap bookworm from $mirror ..."
start=$SECONDS
debootstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates,tini \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
# No apt lists or package cache in the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "imported $tag in $((SECONDS - start)) s"
