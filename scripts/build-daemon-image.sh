#!/usr/bin/env bash
# Build the daemon's image (Dockerfile) with no registry and no network inside the build:
#   1. the base: --base IMAGE if given, else the local debootstrap base autoresearch-daemon-base:bookworm
#      (scripts/make-base-image.sh makes it once, about a minute, and it is then kept by tag);
#   2. wheels built on the host into build/docker/: the project (project/) and its dependencies plus
#      the CPU torch wheel the bundled example trains with (deps/);
#   3. docker build, which installs them with pip --no-index (see the Dockerfile).
#
#   scripts/build-daemon-image.sh [--tag TAG] [--base IMAGE] [--no-torch]
#
# --tag      image name (default autoresearch:local)
# --base     base image with python3 (same minor version as this host's python3) and venv
# --no-torch leave torch out: a daemon that only uses the Docker runner does not need it (~700 MB less)
#            but then the demo (process runner) cannot train.
# TORCH_SPEC picks torch (default torch==2.13.0+cpu, which pip finds on this machine's disk; elsewhere
# also set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu). PYTHON picks the host interpreter.
set -euo pipefail

tag=autoresearch:local
base=""
torch=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --tag) tag=$2; shift ;;
    --base) base=$2; shift ;;
    --no-torch) torch=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-daemon-image.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0+cpu}
docker info >/dev/null 2>&1 || { echo "build-daemon-image.sh: no Docker engine reachable" >&2; exit 1; }

if [[ -z $base ]]; then
  base=autoresearch-daemon-base:bookworm
  scripts/make-base-image.sh "$base"
fi

# The wheels must fit the base's interpreter: compare minor versions up front, not after a long build.
host_py=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
base_py=$(docker run --rm --entrypoint python3 "$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ $host_py != "$base_py" ]]; then
  echo "build-daemon-image.sh: host python is $host_py but $base has $base_py; set PYTHON to a $base_py interpreter" >&2
  exit 1
fi

start=$SECONDS
work=$(mktemp -d /tmp/autoresearch-wheels.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The project wheel from a clean copy of the sources: an in-tree build/lib could leak stale files.
mkdir -p "$work/src" "$work/project" "$work/all"
sources=(pyproject.toml daemon)
[[ -f README.md ]] && sources+=(README.md)  # pyproject's readme; the wheel builds without it too
tar -c --exclude=__pycache__ --exclude=.ruff_cache --exclude='*.egg-info' --exclude='*.pyc' "${sources[@]}" \
  | tar -x -C "$work/src"
pip_wheel() {
  # pip's output only matters when it fails (this machine's pip config adds noisy local indexes).
  "$python" -m pip wheel -q "$@" >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; exit 1; }
}
pip_wheel --no-deps -w "$work/project" "$work/src"
wheel=$(ls "$work"/project/autoresearch-*.whl)

# Its dependencies (pip's cache makes this quick after the first time). The extra brings torch and numpy.
reqs=("autoresearch @ file://$wheel")
if [[ $torch == 1 ]]; then reqs=("autoresearch[example] @ file://$wheel" "$torch_spec"); fi
pip_wheel -w "$work/all" "${reqs[@]}"
rm -f "$work"/all/autoresearch-*.whl

# Replace the context folders in one go, so a stale wheel never lingers in deps/.
rm -rf build/docker/deps build/docker/project
mkdir -p build/docker
mv "$work/all" build/docker/deps
mv "$work/project" build/docker/project
echo "wheels: $(find build/docker/deps -name '*.whl' | wc -l) dependencies ($(du -sh build/docker/deps | cut -f1)) in $((SECONDS - start)) s"

# The engine's legacy builder (no buildx here); its output only matters when it fails.
docker build --build-arg BASE_IMAGE="$base" -t "$tag" -f Dockerfile . >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2; exit 1; }
echo "built $tag on $base in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
