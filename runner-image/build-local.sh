#!/usr/bin/env bash
# Builds the runner image (default autoresearch-runner:local) with no registry, for this machine and CI.
#
#   runner-image/build-local.sh                  # skip if the image exists
#   runner-image/build-local.sh --force          # rebuild the base and the image from scratch
#   runner-image/build-local.sh --base IMG       # build on an image already loaded (e.g. a CUDA PyTorch one)
#
# Without --base it first makes a local base image (autoresearch-base:local): a debootstrap'ed
# Debian bookworm minbase with python3 (3.11), plus the CPU torch wheel (cp311) and numpy installed
# by the host's pip into /usr/local (pip finds torch on this machine's disk, see /etc/xdg/pip and
# PIP_FIND_LINKS). Then it runs `docker build` of runner-image/Dockerfile against that base; the
# Dockerfile needs no network (containers here cannot reach PyPI), only the uv binary, which this
# script copies into the build context. Takes about 2-3 minutes from scratch.
set -euo pipefail

TAG=autoresearch-runner:local
BASE=""
LOCAL_BASE=autoresearch-base:local
FORCE=0
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

while [ $# -gt 0 ]; do
  case $1 in
    --force) FORCE=1 ;;
    --tag) TAG=$2; shift ;;
    --base) BASE=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build-local.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# pip warns about every empty local index folder (this machine's pip config); keep real messages
quiet_pip() { grep -v -e 'is ignored: it is neither' || true; }

# On --force, the images being replaced; removed at the end so no dangling copies pile up.
old_ids=""
[ "$FORCE" = 1 ] && old_ids=$(docker image inspect -f '{{.Id}}' "$TAG" "$LOCAL_BASE" 2>/dev/null || true)
if [ "$FORCE" = 0 ] && have_image "$TAG"; then
  echo "build-local.sh: $TAG exists (use --force to rebuild)"
  exit 0
fi
docker info >/dev/null 2>&1 || { echo "build-local.sh: no Docker engine reachable (is dockerd running?)" >&2; exit 1; }

# uv: the host's binary if there is one, else the one inside PyPI's uv wheel (no install on the host).
# `command -v uv` can be a wrapper script (a pyenv shim, say) that cannot run in the image: only an
# ELF binary is copied; a copy left by an earlier run that is not one is replaced.
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }
[ -e "$here/uv" ] && ! is_elf "$here/uv" && rm -f "$here/uv"
host_uv=""
for cand in "$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null)" "$(command -v uv 2>/dev/null)"; do
  if [ -n "$cand" ] && is_elf "$cand"; then host_uv=$cand; break; fi
done
if [ ! -x "$here/uv" ]; then
  if [ -n "$host_uv" ]; then
    cp "$host_uv" "$here/uv"
  else
    dl=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dl" uv 2>&1 | quiet_pip
    python3 - "$dl" "$here/uv" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
    pathlib.Path(sys.argv[2]).write_bytes(zf.read(name))
PY
    rm -rf "$dl"
  fi
  chmod 0755 "$here/uv"
fi

if [ -z "$BASE" ]; then
  BASE=$LOCAL_BASE
  if [ "$FORCE" = 1 ] || ! have_image "$BASE"; then
    command -v debootstrap >/dev/null || { echo "build-local.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
    rootfs=$(mktemp -d /var/tmp/autoresearch-base.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "build-local.sh: debootstrap bookworm into $rootfs (about 80 s)"
    debootstrap --variant=minbase --include=python3,libstdc++6,libgomp1,ca-certificates \
      bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    echo "build-local.sh: installing $TORCH_SPEC and numpy (cp311 wheels) into the base"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
      --target "$rootfs/usr/local/lib/python3.11/dist-packages" \
      --python-version 3.11 --implementation cp --abi cp311 --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      "$TORCH_SPEC" numpy 2>&1 | quiet_pip
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/local/lib/python3.11/dist-packages/bin
    tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["python3"]' - "$BASE" >/dev/null
    echo "build-local.sh: imported $BASE"
  fi
fi

# Without the buildx plugin (as here) the CLI uses the classic builder and says so: drop that notice.
docker build -q --build-arg BASE_IMAGE="$BASE" -t "$TAG" "$here" 2>&1 >/dev/null \
  | { grep -v -e 'DEPRECATED: The legacy builder' -e 'Install the buildx' -e 'docs.docker.com/go/buildx' -e '^ *$' || true; }
echo "build-local.sh: built $TAG from $BASE"
docker run --rm --network none "$TAG" python3 -c "import torch; print('torch', torch.__version__, 'ok')"
for id in $old_ids; do docker image rm "$id" >/dev/null 2>&1 || true; done
