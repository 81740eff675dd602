#!/usr/bin/env bash
# GPU check of the Docker runner on the device machine (recipe: ../shared/gpu-docker/README.md).
#
# On the development machine, from the project root (once):
#   ../shared/gpu-docker/pack.sh          # .gpu-docker/: a Docker engine + the busybox image gpu-base:local
#   scripts/device-check.sh --pack        # .device-py/: wheels of the daemon's runtime deps (cp310-cp313, ~12 MB)
# Device run: carry [".gpu-docker", ".device-py"], command `scripts/device-check.sh`, timeout_s ~420.
#
# It runs the example through DockerRunner in explicit GPU mode ($GPU_DOCKER_ARGS mapped to DockerSettings):
# torch's CUDA check inside the container, prepare, then train.py for a short budget; it prints the outcome
# and the NVML-measured peak VRAM (the row's memory_gb).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  set -e
  rm -rf .device-py && mkdir -p .device-py
  grep -qxF '/.device-py/' .git/info/exclude 2>/dev/null || echo '/.device-py/' >> .git/info/exclude
  # The device's Python is unknown here; trim the list (DEVICE_PY_VERSIONS="3.12") if the carry is too big.
  for v in ${DEVICE_PY_VERSIONS:-3.10 3.11 3.12 3.13}; do
    tmp=$(mktemp -d)
    python3 -m pip download -q --only-binary=:all: --implementation cp --python-version "$v" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$tmp" docker pydantic pydantic-settings structlog nvidia-ml-py 2>&1 | grep -v 'is ignored' || true
    ls "$tmp" > ".device-py/cp${v/./}.txt" && mv -n "$tmp"/*.whl .device-py/ && rm -rf "$tmp"
  done
  du -sh .device-py
  exit 0
fi

PY=${DEVICE_PYTHON:-/opt/torch/.venv/bin/python3}
if [ "${DEVICE_CHECK_LOCAL:-0}" = 1 ]; then
  # Dry run without a GPU: the running engine, DEVICE_CHECK_IMAGE and a hand-made GPU_DOCKER_ARGS.
  export DEVICE_CHECK_GPUS=none
else
  [ -f .gpu-docker/start-dockerd.sh ] || { echo "no .gpu-docker/: run ../shared/gpu-docker/pack.sh and carry it"; exit 1; }
  # shellcheck disable=SC1091
  source .gpu-docker/start-dockerd.sh || exit 1
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true

# The daemon's deps: the device's own if it has them, else the carried wheels unpacked (wheels are zips).
deps=/tmp/device-py
# (tested from / so that a local folder named docker cannot pass for the SDK)
if ! (cd / && "$PY" -c "import docker.errors, pydantic_settings, structlog, pynvml") 2>/dev/null; then
  "$PY" - "$deps" <<'PY' || exit 1
import pathlib, sys, zipfile
out = pathlib.Path(sys.argv[1])
tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
listing = pathlib.Path(f".device-py/{tag}.txt")
if not listing.exists():
    sys.exit(f"no carried wheels for {tag}: rerun scripts/device-check.sh --pack with that version")
for name in listing.read_text().split():
    zipfile.ZipFile(f".device-py/{name}").extractall(out)
print(f"unpacked the daemon's deps for {tag} into {out}")
PY
fi
export PYTHONPATH=$PWD/daemon:$deps

exec "$PY" - <<'PY'
import json, os, shlex, shutil, sys, tempfile
from pathlib import Path

from autoresearch.config import DockerSettings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.docker import DockerRunner

py = os.environ.get("DEVICE_PYTHON", "/opt/torch/.venv/bin/python3")
args = shlex.split(os.environ["GPU_DOCKER_ARGS"])
devices, mounts, env = [], [], {}
for flag, value in zip(args[::2], args[1::2]):
    if flag == "--device":
        devices.append(value)
    elif flag == "-v":
        mounts.append(value.removesuffix(":ro"))
    elif flag == "-e":
        key, _, val = value.partition("=")
        env[key] = val
gpus = os.environ.get("DEVICE_CHECK_GPUS", "all")
image = os.environ.get("DEVICE_CHECK_IMAGE", "gpu-base:local")
settings = DockerSettings(image=image, gpus=gpus, gpu_mode="explicit", devices=devices, mounts=mounts,
                          env=env, memory="64g", shm_size="8g", tmpfs_size="8g", stop_timeout_s=5)
runner = DockerRunner(settings, repo_id="device-check", instance="device-check")
print("reaped leftovers:", runner.reap_orphans())
runner.check()

root = Path(tempfile.mkdtemp(prefix="device-check-"))
work = root / "repo"
work.mkdir()
for name in ("train.py", "prepare.py", "safe_export.py"):  # train.py saves with safe_export
    shutil.copy(Path("daemon/autoresearch/example") / name, work / name)
(work / "cuda_check.py").write_text(
    "import os, sys, torch\n"
    "ok = torch.cuda.is_available()\n"
    "print('torch', torch.__version__, 'cuda available:', ok, 'uid', os.getuid(), flush=True)\n"
    "if ok:\n"
    "    print('device:', torch.cuda.get_device_name(0))\n"
    "    x = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)\n"
    "    print('bf16 matmul ok:', float((x @ x).float().abs().mean()) > 0)\n"
    "sys.exit(0 if ok or os.environ.get('AUTORESEARCH_EXPECT_CPU') else 3)\n"
)
results = {}
for n, (kind, script, budget, grace) in enumerate(
    [("train", "cuda_check.py", 60, 0), ("prepare", "prepare.py", 120, 0), ("train", "train.py", 10, 90)], 1
):
    spec = RunSpec(n=n, kind=kind, command=f"{py} {script}", workdir=work, budget=budget, grace=grace,
                   env={"AUTORESEARCH_TIME_BUDGET": str(budget), "AUTORESEARCH_EXPECT_CPU": "1" if gpus == "none" else ""},
                   log_path=root / "runs" / str(n) / "run.log",
                   log_cap_bytes=1 << 20, target="train.py", readonly=("prepare.py",), cache_dir=root / "cache")
    out = runner.run(spec, lambda handle: print("started", handle["container_id"][:12], flush=True))
    print(f"== {script}: cause={out.cause} wall_s={out.wall_s:.1f} memory_gb={out.peak_memory_gb} "
          f"gpus={out.gpu_count} {out.detail}")
    print(spec.log_path.read_text()[-1500:])
    results[script] = out.cause
print("RESULT", json.dumps(results), "leftovers reaped:", runner.reap_orphans())
shutil.rmtree(root, ignore_errors=True)
sys.exit(0 if set(results.values()) == {"ok"} else 1)
PY
