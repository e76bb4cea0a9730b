#!/usr/bin/env bash
# Manage a local OpenAI-compatible llama.cpp server (llama-cpp-python) for
# integration tests and local runs of `summarize`.
#
# Usage:
#   scripts/llama-server.sh install            # venv + llama-cpp-python[server] (builds llama.cpp, ~4 min on 2 cores)
#   scripts/llama-server.sh start PORT [MODEL] # start in background, print base URL http://127.0.0.1:PORT/v1
#   scripts/llama-server.sh stop PORT          # stop the server started on PORT
#   scripts/llama-server.sh status PORT        # exit 0 if it answers /v1/models
#
# Env:
#   LLAMA_VENV            venv dir (default .venv-llama, relative to repo root)
#   PYTHON                interpreter used to create the venv (default python3)
#   LLAMA_CPP_VERSION     llama-cpp-python version (default 0.3.36)
#   CMAKE_ARGS            extra CMake args for the llama.cpp build
#                         (default: -DLLAVA_BUILD=OFF; multimodal is not needed)
#   CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default 2)
#   LLAMA_N_CTX           context size (default 2048)
#   LLAMA_N_THREADS       threads (default 2)
#   LLAMA_SEED            model seed (default 42)
#   LLAMA_MODEL_ALIAS     id reported by /v1/models (default: the model path)
#   LLAMA_KV_REUSE        1 = keep llama-cpp-python's KV-cache prefix reuse between
#                         requests (default 0: every request is evaluated from
#                         scratch, which makes output independent of earlier requests)
#   LLAMA_START_TIMEOUT   seconds to wait for readiness (default 120)
#   TMPDIR                where the pid/log files go (default /tmp)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
VENV="${LLAMA_VENV:-.venv-llama}"
case "$VENV" in
  /*) ;;
  *) VENV="$REPO_ROOT/$VENV" ;;
esac
VPY="$VENV/bin/python"
RUNDIR="${TMPDIR:-/tmp}"
RUNDIR="${RUNDIR%/}"

log() { printf 'llama-server: %s\n' "$*" >&2; }
die() { printf 'llama-server: error: %s\n' "$*" >&2; exit 1; }

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
}

pid_file() { printf '%s/summarize-llama-%s.pid' "$RUNDIR" "$1"; }
log_file() { printf '%s/summarize-llama-%s.log' "$RUNDIR" "$1"; }

# llama-cpp-python reuses the KV cache for the longest common prefix with the
# previous request. An exact repeat of the previous prompt then re-evaluates
# only its last token (single-token kernel instead of the batched one), which
# changes the logits slightly and can change greedy (temperature 0) output.
# This shim forces a full re-evaluation per request so identical requests give
# identical output regardless of what was served before. Same process, so the
# recorded PID stays valid.
SERVER_SHIM='
import runpy, sys
import llama_cpp.llama as _L
_orig_generate = _L.Llama.generate
def _generate_from_scratch(self, *args, **kwargs):
    if kwargs.get("reset", True) and len(args) < 8:
        self.reset()
    return (yield from _orig_generate(self, *args, **kwargs))
_L.Llama.generate = _generate_from_scratch
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
'

check_port() {
  if ! [[ "${1:-}" =~ ^[1-9][0-9]{0,4}$ ]] || (( $1 > 65535 )); then
    die "invalid PORT '${1:-}'"
  fi
}

# HTTP status of GET URL ("000" when nothing answers). curl if present, else python.
http_status() {
  local url="$1"
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" 2>/dev/null || true
  else
    "$PYTHON" - "$url" <<'EOF' 2>/dev/null || printf '000'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status, end="")
except urllib.error.HTTPError as e:
    print(e.code, end="")
except Exception:
    print("000", end="")
EOF
  fi
}

# llama.cpp builds with -march=native: the venv only runs on the CPU it was built for (another
# CPU dies with SIGILL, "invalid opcode", at the first request). The install stamps the CPU's
# flags into the venv; a venv built elsewhere (a moved cache, a new machine) is rebuilt.
cpu_stamp() { { echo noamx; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | sort; } | sha256sum | cut -c1-16; }
STAMP="$VENV/.summarize-cpu"

installed_ok() {
  [[ -x "$VPY" ]] || return 1
  if [[ "$(cat "$STAMP" 2>/dev/null)" != "$(cpu_stamp)" ]]; then
    [[ -f "$STAMP" ]] && log "$VENV was built on another CPU; rebuilding it for this one"
    [[ -f "$STAMP" ]] || log "$VENV has no CPU stamp (built before stamps, maybe elsewhere); rebuilding it"
    return 1
  fi
  "$VPY" - "$LLAMA_CPP_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import llama_cpp, llama_cpp.server.app  # noqa: F401
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] else 1)
EOF
}

cmd_install() {
  if installed_ok; then
    log "llama-cpp-python $LLAMA_CPP_VERSION already installed in $VENV"
    return 0
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
  if [[ ! -x "$VPY" ]]; then
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create venv (on Debian: apt-get install python3-venv)"
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  "$VPY" -m pip install --upgrade pip >&2

  # The venv's bin must be on PATH so the isolated build env finds a
  # pip-installed cmake (scikit-build-core looks it up on PATH).
  export PATH="$VENV/bin:$PATH"
  if ! command -v cmake >/dev/null 2>&1; then
    log "cmake not found; installing it from PyPI into the venv"
    "$VPY" -m pip install 'cmake>=3.21' >&2
  fi
  if ! command -v ninja >/dev/null 2>&1 && ! command -v make >/dev/null 2>&1; then
    log "neither ninja nor make found; installing ninja from PyPI into the venv"
    "$VPY" -m pip install ninja >&2
  fi
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
    || die "no C compiler found (need gcc/g++ to build llama.cpp)"

  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
  # Note: llama.cpp builds with -march=native by default, so the venv is tied
  # to this CPU family; don't share a cached venv across different runners.
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
  # No AMX: a CPU can list amx_tile while its hypervisor leaves AMX state off (Firecracker
  # VMs do), and -march=native code then dies with SIGILL at the first tileloadd. GCC keeps
  # these explicit -mno- flags over what -march=native implies.
  if grep -qm1 '^flags.* amx' /proc/cpuinfo 2>/dev/null; then
    export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    log "this CPU lists AMX: building without it (CFLAGS='$CFLAGS')"
  fi
  log "building llama-cpp-python[server]==$LLAMA_CPP_VERSION (CMAKE_ARGS='$CMAKE_ARGS', jobs=$CMAKE_BUILD_PARALLEL_LEVEL); this takes several minutes"
  # --force-reinstall: a wheel built for another CPU must not be kept as "already satisfied".
  "$VPY" -m pip install --no-cache-dir --force-reinstall "llama-cpp-python[server]==$LLAMA_CPP_VERSION" >&2
  cpu_stamp >"$STAMP"

  installed_ok || die "install finished but 'import llama_cpp.server' at $LLAMA_CPP_VERSION fails in $VENV"
  log "installed llama-cpp-python $LLAMA_CPP_VERSION in $VENV"
}

# Echo PID from pidfile if that process is alive.
running_pid() {
  local pf pid
  pf="$(pid_file "$1")"
  [[ -f "$pf" ]] || return 1
  pid="$(cat "$pf" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a stale pidfile whose PID was reused by another process.
  if [[ -r "/proc/$pid/cmdline" ]]; then
    grep -qa 'llama_cpp' "/proc/$pid/cmdline" || return 1
  fi
  printf '%s' "$pid"
}

cmd_start() {
  local port="${1:-}" model="${2:-}"
  check_port "$port"
  installed_ok || die "llama-cpp-python $LLAMA_CPP_VERSION is not installed in $VENV; run: $0 install"

  if [[ -z "$model" ]]; then
    model="$("$SCRIPT_DIR/fetch-model.sh" | tail -n 1)" || die "fetch-model.sh failed"
  fi
  [[ -f "$model" ]] || die "model file not found: $model"

  local url="http://127.0.0.1:$port/v1"
  local pf lf pid
  pf="$(pid_file "$port")"
  lf="$(log_file "$port")"
  mkdir -p "$RUNDIR"

  if pid="$(running_pid "$port")"; then
    if [[ "$(http_status "$url/models")" == "200" ]]; then
      log "already running on port $port (pid $pid)"
      printf '%s\n' "$url"
      return 0
    fi
    die "a server (pid $pid) from $pf is alive but not answering; run: $0 stop $port"
  fi
  rm -f "$pf"
  if [[ "$(http_status "$url/models")" != "000" ]]; then
    die "something else is already listening on 127.0.0.1:$port"
  fi

  local threads="${LLAMA_N_THREADS:-2}"
  # --verbose false: no llama.cpp load/perf chatter (uvicorn access log stays).
  # --seed: fixed RNG seed (requests may also pass "seed"; temperature 0 is greedy).
  # --logits_all false: only last-token logits; ~35% faster prompt processing,
  #   but requests asking for "logprobs" are then rejected.
  # --cache false: no prompt cache, so identical requests do identical work.
  log "starting llama_cpp.server on 127.0.0.1:$port with $model (log: $lf)"
  local extra=()
  [[ -n "${LLAMA_MODEL_ALIAS:-}" ]] && extra+=(--model_alias "$LLAMA_MODEL_ALIAS")
  local entry=(-m llama_cpp.server)
  [[ "${LLAMA_KV_REUSE:-0}" == "1" ]] || entry=(-c "$SERVER_SHIM")
  # setsid (when available) puts the server in its own session so it
  # survives the caller's shell/CI step and can be stopped as a group.
  # env/nohup/setsid all exec, so $! is the python server's PID.
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  # CONFIG_FILE / API_KEY would be picked up from the environment by the
  # server's settings loader and override or break the flags below.
  env -u CONFIG_FILE -u API_KEY PYTHONUNBUFFERED=1 \
    nohup ${launcher[@]+"${launcher[@]}"} "$VPY" "${entry[@]}" \
    --model "$model" \
    --host 127.0.0.1 --port "$port" \
    --n_ctx "${LLAMA_N_CTX:-2048}" \
    --n_threads "$threads" --n_threads_batch "$threads" \
    --seed "${LLAMA_SEED:-42}" \
    --verbose false \
    --logits_all false \
    --cache false \
    ${extra[@]+"${extra[@]}"} \
    </dev/null >"$lf" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$pf"

  local timeout="${LLAMA_START_TIMEOUT:-120}" waited=0 start_s=$SECONDS
  while :; do
    waited=$((SECONDS - start_s))
    if ! kill -0 "$pid" 2>/dev/null; then
      log "server process $pid exited during startup; log tail:"
      tail -n 40 "$lf" >&2 || true
      rm -f "$pf"
      exit 1
    fi
    if [[ "$(http_status "$url/models")" == "200" ]]; then
      break
    fi
    if (( waited >= timeout )); then
      log "server did not answer GET $url/models with 200 within ${timeout}s; log tail:"
      tail -n 40 "$lf" >&2 || true
      stop_pid "$pid"
      rm -f "$pf"
      exit 1
    fi
    sleep 1
  done
  log "ready after ~${waited}s (pid $pid)"
  printf '%s\n' "$url"
}

stop_pid() {
  local pid="$1" i
  # With setsid the server is a process-group leader; signal the group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid did not exit after SIGTERM; sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
  local port="${1:-}" pid
  check_port "$port"
  if pid="$(running_pid "$port")"; then
    log "stopping server on port $port (pid $pid)"
    stop_pid "$pid"
  else
    log "no running server recorded for port $port"
  fi
  rm -f "$(pid_file "$port")"
}

cmd_status() {
  local port="${1:-}"
  check_port "$port"
  [[ "$(http_status "http://127.0.0.1:$port/v1/models")" == "200" ]]
}

sub="${1:-}"
[[ $# -gt 0 ]] && shift
case "$sub" in
  install) cmd_install "$@" ;;
  start)   cmd_start "$@" ;;
  stop)    cmd_stop "$@" ;;
  status)  cmd_status "$@" ;;
  -h|--help|help) usage ;;
  *) usage; exit 2 ;;
esac
