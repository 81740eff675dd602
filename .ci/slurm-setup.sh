#!/usr/bin/env bash
# A one-node Slurm cluster for the Slurm tests (Debian 12, Slurm 22.05, run as root); idempotent.
#   source .ci/slurm-setup.sh start   # also exports AUTORESEARCH_REQUIRE_SLURM=1 into the caller
#   bash .ci/slurm-setup.sh start|stop|status
# start: installs slurmctld slurmd slurm-client munge if missing, writes a one-node config with fake
# GPUs (character devices, so `--gres=gpu:1` jobs get their own CUDA_VISIBLE_DEVICES), proctrack/cgroup
# (so `setsid` children die with the job) and fast scheduler settings, starts munged, slurmctld and
# slurmd unless a cluster already answers, and waits until the node is idle.
# stop: ends only the daemons this script started, by their recorded PIDs.
# Env: SLURM_CI_DIR (default /tmp/slurm-ci), SLURM_CI_NGPU (default 2), SLURM_CI_PROCTRACK (cgroup).

_slurm_ci_node_state() { sinfo -h -o %T 2>/dev/null | head -n 1; }

_slurm_ci_wait_idle() {
  local state=""
  for _ in $(seq 1 150); do
    state=$(_slurm_ci_node_state)
    [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ] && return 0
    sleep 0.2
  done
  echo "slurm-setup: the node did not become idle (state: ${state:-none})" >&2
  tail -n 30 "$SLURM_CI_DIR"/log/*.log >&2 2>/dev/null || true
  return 1
}

_slurm_ci_write_config() {
  local host; host=$(hostname -s)
  mkdir -p "$SLURM_CI_DIR"/{ctld,spool,log,gpu} /etc/slurm
  for i in $(seq 0 $((SLURM_CI_NGPU - 1))); do
    # slurmd ignores File= entries that are not character devices (then no CUDA_VISIBLE_DEVICES)
    [ -c "$SLURM_CI_DIR/gpu/nvidia$i" ] || mknod "$SLURM_CI_DIR/gpu/nvidia$i" c 1 3
  done
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_CI_DIR/ctld
SlurmdSpoolDir=$SLURM_CI_DIR/spool
SlurmctldPidFile=$SLURM_CI_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_CI_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_CI_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_CI_DIR/log/slurmd.log
ProctrackType=proctrack/$SLURM_CI_PROCTRACK
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_CI_DIR/log/jobcomp.txt
KillWait=5
OverTimeLimit=0
MinJobAge=600
SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=0,batch_sched_delay=0
NodeName=$host CPUs=$(nproc) RealMemory=1000 Gres=gpu:$SLURM_CI_NGPU State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/gpu/nvidia[0-%d]\n' \
    "$host" "$SLURM_CI_DIR" $((SLURM_CI_NGPU - 1)) > /etc/slurm/gres.conf
  printf 'CgroupPlugin=autodetect\nConstrainCores=no\nConstrainDevices=no\nConstrainRAMSpace=no\n' \
    > /etc/slurm/cgroup.conf
}

_slurm_ci_start_munge() {
  [ -s /etc/munge/munge.key ] || { mungekey -c -f; chown munge:munge /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  munge -n >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
}

_slurm_ci_start_daemon() {  # name, pid file: starts one daemon unless its recorded PID still lives
  local name=$1 mine=$SLURM_CI_DIR/$2
  if [ -f "$mine" ] && kill -0 "$(cat "$mine")" 2>/dev/null; then return 0; fi
  setsid "$name" -D >"$SLURM_CI_DIR/log/$name.out" 2>&1 </dev/null &
  echo $! >"$mine"
}

_slurm_ci_start() (
  set -euo pipefail
  if [ -n "$(_slurm_ci_node_state)" ]; then
    echo "slurm-setup: a cluster already answers"; _slurm_ci_wait_idle; sinfo; exit 0
  fi
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
      || ! command -v munged >/dev/null; then
    echo "slurm-setup: installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
  _slurm_ci_write_config
  _slurm_ci_start_munge
  _slurm_ci_start_daemon slurmctld ctld.pid.mine
  _slurm_ci_start_daemon slurmd d.pid.mine
  _slurm_ci_wait_idle
  sinfo
)

_slurm_ci_stop() (
  set -uo pipefail
  for f in d.pid.mine ctld.pid.mine; do
    [ -f "$SLURM_CI_DIR/$f" ] || continue
    p=$(cat "$SLURM_CI_DIR/$f"); kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    rm -f "$SLURM_CI_DIR/$f"
  done
)

SLURM_CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
SLURM_CI_NGPU=${SLURM_CI_NGPU:-2}
SLURM_CI_PROCTRACK=${SLURM_CI_PROCTRACK:-cgroup}
case "${1:-start}" in
  start)
    # a fresh bash, not `if _slurm_ci_start`: set -e is ignored inside an if's condition
    if bash "${BASH_SOURCE[0]}" start-checked; then
      export AUTORESEARCH_REQUIRE_SLURM=1
    else
      echo "slurm-setup: failed" >&2
      # shellcheck disable=SC2317  # return when sourced, exit when run
      return 1 2>/dev/null || exit 1
    fi ;;
  start-checked) _slurm_ci_start ;;
  stop) _slurm_ci_stop ;;
  status) sinfo ;;
  *) echo "usage: slurm-setup.sh start|stop|status" >&2; return 2 2>/dev/null || exit 2 ;;
esac
