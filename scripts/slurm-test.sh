#!/usr/bin/env bash
# `make test-slurm`: shards under a real Slurm (issue 10). Starts munge and a one-node Slurm
# cluster (Debian's slurm-wlm: slurmctld and slurmd, config in a temporary folder) on this
# machine, serves DOCS pages from a loopback site (python3 -m http.server), runs summarize once
# over the whole list, then as an `sbatch --array=0-3` job whose tasks take their shard from
# SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, merges the four reports with `summarize merge`
# and checks that the merged report equals the single run's, timing fields aside.
# Needs root (the daemons) and Debian's slurm-wlm and munge (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug/summarize}
case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
DOCS=${DOCS:-40}
log() { printf 'test-slurm: %s\n' "$*" >&2; }
[ -x "$BIN" ] || cargo build
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null
fi
WORK=$(mktemp -d)
chmod 755 "$WORK"
SITE_PID=
cleanup() {
  scontrol shutdown >/dev/null 2>&1 || true
  [ -n "$SITE_PID" ] && kill "$SITE_PID" 2>/dev/null || true
  [ -f "$WORK/munged.pid" ] && kill "$(cat "$WORK/munged.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

# munge: its own socket and pid in the work folder, so a system munged is left alone.
export MUNGE_SOCKET=$WORK/munge.socket
munged --force --socket "$MUNGE_SOCKET" --pid-file "$WORK/munged.pid" \
  --log-file "$WORK/munged.log" --seed-file "$WORK/munged.seed"
# One node, this machine; everything runs as root, no accounting, no cgroups.
host=$(hostname -s)
mkdir -p "$WORK/spool" "$WORK/state"
export SLURM_CONF=$WORK/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=summarize-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$((17000 + RANDOM % 1000))
SlurmdPort=$((18000 + RANDOM % 1000))
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
  sleep 1
done
sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)' ||
  { log "the Slurm node did not come up"; cat "$WORK"/slurm*.log >&2; exit 1; }
log "Slurm is up: $(sinfo -h -o '%P %D %T')"

# The loopback site: DOCS articles and one missing page.
mkdir -p "$WORK/site"
for i in $(seq 0 $((DOCS - 1))); do
  {
    printf '<!doctype html><html><head><title>Shard story %s</title></head><body><article><h1>Shard story %s</h1>\n' "$i" "$i"
    for p in 1 2 3 4; do
      printf '<p>Paragraph %s of story %s: the harbour board of town %s met on Monday to talk about ferries, tides and the budget for the winter, and residents asked questions about the new timetable.</p>\n' "$p" "$i" "$i"
    done
    printf '</article></body></html>\n'
  } > "$WORK/site/doc$i.html"
done
PORT=$((20000 + RANDOM % 20000))
(cd "$WORK/site" && exec python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
SITE_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/doc0.html" >/dev/null 2>&1 && break; sleep 0.1; done
{
  for i in $(seq 0 $((DOCS - 1))); do echo "http://127.0.0.1:$PORT/doc$i.html"; done
  echo "http://127.0.0.1:$PORT/missing.html"
} > "$WORK/urls.txt"

log "one run over $((DOCS + 1)) inputs"
HOME=$WORK "$BIN" -b extractive -q --no-cache --retries 0 --list "$WORK/urls.txt" -o "$WORK/whole.jsonl" || true
cat > "$WORK/job.sh" <<EOF
#!/bin/bash
exec "$BIN" -b extractive -q --no-cache --retries 0 --list "$WORK/urls.txt" -o "$WORK/shard-\$SLURM_ARRAY_TASK_ID.jsonl"
EOF
chmod +x "$WORK/job.sh"
log "sbatch --array=0-3"
HOME=$WORK sbatch --wait --array=0-3 --output="$WORK/slurm-%A_%a.out" --chdir="$WORK" "$WORK/job.sh" || true
ls "$WORK"/shard-*.jsonl >/dev/null 2>&1 || { log "no shard report"; cat "$WORK"/slurm-*.out "$WORK"/slurmd.log >&2; exit 1; }
for f in "$WORK"/shard-*.jsonl; do log "$(basename "$f"): $(wc -l < "$f") records"; done
"$BIN" merge -q "$WORK"/shard-*.jsonl --list "$WORK/urls.txt" -o "$WORK/merged.jsonl" || true
python3 - "$WORK/whole.jsonl" "$WORK/merged.jsonl" <<'PY'
import json, sys
def load(p):
    out = []
    for line in open(p):
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if not k.endswith("_ms") and k != "tokens_per_s"})
    return out
whole, merged = load(sys.argv[1]), load(sys.argv[2])
if whole != merged:
    print(f"test-slurm: FAILED: the merged report differs from the single run ({len(merged)} vs {len(whole)} records)")
    sys.exit(1)
ok = sum(r["status"] == "ok" for r in whole)
print(f"test-slurm: ok: 4 array tasks, merged report equals the single run's ({len(whole)} records, {ok} ok), timing fields aside")
PY
