#!/usr/bin/env bash
# A real standalone Apache Flink cluster on 127.0.0.1 for Beam's portable FlinkRunner:
# a jobmanager and a taskmanager (separate JVMs, started by Flink's own bin/ scripts), the Beam Flink
# job server, and a Python SDK worker pool (the EXTERNAL environment, as in a Kubernetes sidecar).
# Flink comes from PyPI (apache-flink-libraries: lib/ with flink-dist; apache-flink: bin/ and conf/),
# the job server from Maven Central. Everything is cached. No Docker. See docs/distributed.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FLINK_VERSION="${FLINK_VERSION:-1.19.3}"   # newest 1.19.x; 1.19 is a --flink_version Beam 2.77 supports
FLINK_MINOR=${FLINK_VERSION%.*}
# The job server: the shaded beam-runners-flink-<minor>-job-server jar of BEAM_VERSION (default: the
# apache-beam of the worker Python) when Maven Central has it; otherwise it is assembled from
# beam-runners-flink-<minor> of JOBSERVER_FALLBACK (its dependencies + a manifest-only launcher jar).
JOBSERVER_FALLBACK="${FLINK_JOBSERVER_FALLBACK:-2.62.0}"
CACHE="${NEURAL_INGEST_CACHE:-$HOME/.cache/neural-ingest}/flink"
START_TIMEOUT="${FLINK_START_TIMEOUT:-180}"
STOP_TIMEOUT="${FLINK_STOP_TIMEOUT:-30}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
T0=$EPOCHREALTIME

log() { printf '[flink-local] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
took() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

usage() {
  cat <<EOF
Usage: $0 COMMAND [options]

  install                 fetch and cache Flink $FLINK_VERSION and the Beam Flink job server; prints nothing
  start   [--name N] [ports/sizes below] [--python PY] [--no-job-server] [--no-worker-pool]
                          start instance N (default: default) and wait until every part is up
  stop    [--name N]      stop all parts of N (SIGTERM, SIGKILL after ${STOP_TIMEOUT}s)
  status  [--name N]      one line per part; exit 0 only if all that were started are running
  args    [--name N]      print the Beam arguments that run a pipeline on N
  logs    [--name N] [--lines 40]   tail every log of N
  delete  [--name N]      stop N and remove its directory (config, logs, staged artifacts)
  jobserver-jar           print the path of the job server jar (for --flink_job_server_jar)
  flink-home              print the path of the cached Flink distribution

Ports (127.0.0.1): --rest-port 8081 (the --flink_master), --rpc-port 6123, --job-port 8099,
  --artifact-port 8098, --expansion-port 8097, --worker-port 50000 (the worker pool);
  --free-ports: every port one the system has free now (for tests and benchmarks beside other clusters).
Sizes: --slots 2, --parallelism 1, --jm-memory 1024m, --tm-memory 1536m, --tm-off-heap 0m (the TaskManager's
  task off-heap memory: direct buffers of Beam's data plane; large jobs need ~512m, with --tm-memory raised too).
start reuses an instance's last ports and sizes unless given again.
--python: the Python of the worker pool (default: $ROOT/.venv/bin/python, else python3); its
environment must have neural-ingest installed (SDK workers import the pipeline's code).

Environment: FLINK_VERSION ($FLINK_VERSION), BEAM_VERSION (default: the worker Python's apache-beam),
FLINK_JOBSERVER_FALLBACK ($JOBSERVER_FALLBACK), NEURAL_INGEST_CACHE (now ${CACHE%/flink}),
FLINK_START_TIMEOUT ($START_TIMEOUT), FLINK_STOP_TIMEOUT, JAVA_HOME (default: the java on PATH).
EOF
}

default_python() { if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"; else command -v python3; fi; }
java_home() {
  if [[ -n "${JAVA_HOME:-}" ]]; then echo "$JAVA_HOME"; return; fi
  local j; j=$(command -v java) || die "java not found: install a JDK (11 or 17)"
  dirname "$(dirname "$(readlink -f "$j")")"
}

# --- install -----------------------------------------------------------------------------------
flink_home() { echo "$CACHE/flink-$FLINK_VERSION"; }

install_flink() {   # prints FLINK_HOME
  local home tmp py; home=$(flink_home)
  if [[ -f "$home/.complete" ]]; then echo "$home"; return; fi
  mkdir -p "$CACHE/downloads"; exec 9>"$CACHE/.install.lock"; flock 9
  if [[ -f "$home/.complete" ]]; then echo "$home"; return; fi
  command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
  py=$(default_python); tmp=$(mktemp -d "$CACHE/.assemble.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
  local dl="$CACHE/downloads" libs wheel
  libs="$dl/apache-flink-libraries-$FLINK_VERSION.tar.gz"
  wheel=$(ls "$dl"/apache_flink-"$FLINK_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [[ ! -f "$libs" || -z "$wheel" ]]; then
    log "downloading Flink $FLINK_VERSION from PyPI (apache-flink-libraries: lib/, apache-flink: bin/ + conf/) ..."
    # Only the files: neither package is installed (apache-flink pins its own apache-beam).
    [[ -f "$libs" ]] || "$py" -m pip download -q --no-deps --no-binary :all: -d "$tmp/dl" "apache-flink-libraries==$FLINK_VERSION" \
      || die "pip download apache-flink-libraries==$FLINK_VERSION failed"
    # bin/ and conf/ are the same in every platform wheel: pick one explicitly.
    [[ -n "$wheel" ]] || "$py" -m pip download -q --no-deps --only-binary :all: --python-version 3.11 \
      --platform manylinux2014_x86_64 -d "$tmp/dl" "apache-flink==$FLINK_VERSION" \
      || die "pip download apache-flink==$FLINK_VERSION failed"
    mv "$tmp"/dl/* "$dl/" 2>/dev/null || true
    wheel=$(ls "$dl"/apache_flink-"$FLINK_VERSION"-*.whl | head -n1)
  fi
  log "assembling Flink $FLINK_VERSION in $home"
  tar -xzf "$libs" -C "$tmp" "apache-flink-libraries-$FLINK_VERSION/deps"
  unzip -q "$wheel" 'pyflink/bin/*' 'pyflink/conf/*' -d "$tmp/wheel"
  local d="$tmp/flink-$FLINK_VERSION" deps="$tmp/apache-flink-libraries-$FLINK_VERSION/deps"
  mkdir -p "$d"/{bin,log,plugins,opt}
  cp -r "$deps/lib" "$d/lib"
  cp -r "$deps/opt/." "$d/opt/" 2>/dev/null || true
  cp "$tmp"/wheel/pyflink/bin/* "$deps/bin/bash-java-utils.jar" "$d/bin/"
  cp -r "$tmp/wheel/pyflink/conf" "$d/conf"
  chmod +x "$d"/bin/*.sh "$d/bin/flink"
  ls "$d"/lib/flink-dist-*.jar >/dev/null 2>&1 || die "no flink-dist jar in apache-flink-libraries $FLINK_VERSION"
  touch "$d/.complete"; rm -rf "$home"; mv "$d" "$home"
  rm -rf "$tmp" "$libs" "$wheel"; trap - EXIT   # the assembled home is the cache; the downloads are not needed
  log "installed Flink $FLINK_VERSION in $(took): $home"
  echo "$home"
}

beam_version() {
  if [[ -n "${BEAM_VERSION:-}" ]]; then echo "$BEAM_VERSION"; return; fi
  "$(default_python)" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null || echo "$JOBSERVER_FALLBACK"
}

jobserver_dir() { echo "$CACHE/jobserver-flink-$FLINK_MINOR"; }

install_jobserver() {   # prints the jar to run with java -jar
  local dir bv want art; dir=$(jobserver_dir); bv=$(beam_version)
  want="$dir/beam-runners-flink-$FLINK_MINOR-job-server-$bv.jar"
  [[ -f "$want" ]] && { echo "$want"; return; }
  mkdir -p "$dir"; exec 7>"$dir/.install.lock"; flock 7
  [[ -f "$want" ]] && { echo "$want"; return; }
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch the job server from Maven Central)"
  art="org.apache.beam:beam-runners-flink-$FLINK_MINOR-job-server:$bv"
  local fb="$JOBSERVER_FALLBACK" jar="$dir/beam-runners-flink-$FLINK_MINOR-job-server-$JOBSERVER_FALLBACK.jar"
  if [[ -f "$dir/unavailable-$bv" && -f "$jar" ]]; then echo "$jar"; return; fi   # asked before: not there
  log "fetching $art from Maven Central ..."
  if mvn -B -q -Dmaven.repo.local="$dir/m2" "$DEP_PLUGIN:copy" -Dartifact="$art" -DoutputDirectory="$dir" \
      -Dmdep.overWriteReleases=true >"$dir/mvn-$bv.log" 2>&1 && [[ -f "$want" ]]; then
    log "job server $bv ready in $(took): $want"; echo "$want"; return
  fi
  # Not on this Maven Central (or offline): assemble the fallback version. A Beam job server speaks the
  # portable Fn/Job API, so an older one runs pipelines of a newer Python SDK (tested: 2.62 with 2.77).
  touch "$dir/unavailable-$bv"
  if [[ -f "$jar" ]]; then log "$art is not available; using the assembled $fb job server"; echo "$jar"; return; fi
  log "$art is not available; assembling the job server from beam-runners-flink-$FLINK_MINOR:$fb and its dependencies ..."
  mkdir -p "$dir/assemble-$fb"
  cat >"$dir/assemble-$fb/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local.neural-ingest</groupId><artifactId>flink-job-server</artifactId><version>1</version>
<packaging>pom</packaging><dependencies>
<dependency><groupId>org.apache.beam</groupId><artifactId>beam-runners-flink-$FLINK_MINOR</artifactId><version>$fb</version></dependency>
<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.30</version></dependency>
</dependencies></project>
EOF
  local mvn=(mvn -B -q -f "$dir/assemble-$fb/pom.xml" -Dmaven.repo.local="$dir/m2" "$DEP_PLUGIN:build-classpath"
             -Dmdep.outputFile="$dir/assemble-$fb/classpath.txt")
  "${mvn[@]}" -o >"$dir/assemble-$fb/mvn.log" 2>&1 || "${mvn[@]}" >"$dir/assemble-$fb/mvn.log" 2>&1 \
    || { tail -n 30 "$dir/assemble-$fb/mvn.log" >&2; die "resolving beam-runners-flink-$FLINK_MINOR:$fb failed (log: $dir/assemble-$fb/mvn.log)"; }
  # A launcher jar: Main-Class + a Class-Path of the resolved jars (relative, so the cache can move).
  python3 - "$dir" "$dir/assemble-$fb/classpath.txt" "$jar.tmp" <<'EOF'
import os, sys, zipfile
base, cp_file, out = sys.argv[1:]
jars = [os.path.relpath(p, base) for p in open(cp_file).read().strip().split(os.pathsep) if p]
def header(line):  # manifest lines are at most 72 bytes; continuation lines start with a space
    b = line.encode(); parts = [b[:72]]; b = b[72:]
    while b:
        parts.append(b" " + b[:71]); b = b[71:]
    return b"\r\n".join(parts) + b"\r\n"
mf = (header("Manifest-Version: 1.0") + header("Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver")
      + header("Class-Path: " + " ".join(jars)) + b"\r\n")
with zipfile.ZipFile(out, "w") as z:
    z.writestr("META-INF/MANIFEST.MF", mf)
EOF
  mv "$jar.tmp" "$jar"
  log "job server $fb (Flink $FLINK_MINOR) assembled in $(took): $jar"
  echo "$jar"
}

cmd_install() {
  while (($#)); do case "$1" in -h|--help) usage; exit 0 ;; *) die "install: unknown option $1" ;; esac; done
  install_flink >/dev/null; install_jobserver >/dev/null
}

# --- instances -----------------------------------------------------------------------------------
inst_dir() { echo "$CACHE/instances/$1"; }
inst_get() { local f; f="$(inst_dir "$1")/instance.env"; [[ -f "$f" ]] && sed -n "s/^$2=//p" "$f" | tail -n1; return 0; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A part's pid, if alive and really that part of this instance (guards against pid reuse).
part_pid() {   # NAME PART(jobmanager|taskmanager|jobserver|workerpool)
  local inst pid f needle; inst=$(inst_dir "$1")
  case "$2" in
    jobmanager) f="$inst/run/flink-$1-standalonesession.pid"; needle="$inst/conf" ;;
    taskmanager) f="$inst/run/flink-$1-taskexecutor.pid"; needle="$inst/conf" ;;
    jobserver) f="$inst/run/jobserver.pid"; needle="$inst/artifacts" ;;
    workerpool) f="$inst/run/workerpool.pid"; needle="worker_pool_main" ;;
  esac
  [[ -f "$f" ]] || return 1
  pid=$(tail -n1 "$f" | tr -dc '0-9'); [[ -n "$pid" ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$needle" || return 1
  echo "$pid"
}

NAME=default
parse_name() {
  NAME=default
  while (($#)); do case "$1" in
    --name) NAME=${2:?--name needs a value}; shift 2 ;;  --lines) LINES_=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;  *) die "unknown option $1" ;;
  esac; done
  [[ "$NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad instance name '$NAME'"
}

write_config() {   # INST NAME HOME
  local inst=$1 jopts
  # Java 17 needs Flink's --add-opens list: take it from the shipped config rather than copying it here.
  jopts=$(sed -n 's/^ *all: *//p' "$3/conf/config.yaml" | head -n1)
  cp "$3"/conf/log4j*.properties "$inst/conf/"
  cat >"$inst/conf/config.yaml" <<EOF
# generated by flink-local.sh; edits are overwritten on start
env.java.opts.all: $jopts
env.log.dir: $inst/log
env.pid.dir: $inst/run
io.tmp.dirs: $inst/tmp
web.tmpdir: $inst/tmp
blob.storage.directory: $inst/tmp
jobmanager.rpc.address: 127.0.0.1
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.port: $RPC_PORT
jobmanager.memory.process.size: $JM_MEMORY
jobmanager.execution.failover-strategy: region
taskmanager.host: 127.0.0.1
taskmanager.bind-host: 127.0.0.1
taskmanager.numberOfTaskSlots: $SLOTS
taskmanager.memory.process.size: $TM_MEMORY
# Direct memory of the TaskManager's side of Beam's gRPC data plane (Netty): with only the framework's 128m
# and the network's 256m, 100,000 documents handed to an SDK worker at once hit "Cannot reserve ... bytes of
# direct buffer memory", the channel closed and the job hung without failing.
taskmanager.memory.task.off-heap.size: $TM_OFF_HEAP
taskmanager.memory.managed.fraction: 0.05
# Beam's batch translation shuffles through blocking partitions: give them enough buffers.
taskmanager.memory.network.min: 256m
taskmanager.memory.network.max: 256m
taskmanager.network.sort-shuffle.min-buffers: 128
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $REST_PORT
parallelism.default: $PARALLELISM
EOF
}

flink_env() {   # run a command of Flink's bin/ with this instance's environment
  local inst; inst=$(inst_dir "$NAME")
  env JAVA_HOME="$(java_home)" FLINK_CONF_DIR="$inst/conf" FLINK_LOG_DIR="$inst/log" FLINK_PID_DIR="$inst/run" \
    FLINK_IDENT_STRING="$NAME" "$@"
}

cmd_start() {
  local name=default python="" js=1 wp=1 free=0 inst home jar k
  REST_PORT="" RPC_PORT="" JOB_PORT="" ARTIFACT_PORT="" EXPANSION_PORT="" WORKER_PORT="" SLOTS="" PARALLELISM="" JM_MEMORY="" TM_MEMORY="" TM_OFF_HEAP=""
  while (($#)); do case "$1" in
    --name) name=${2:?}; shift 2 ;;  --python) python=${2:?}; shift 2 ;;
    --rest-port) REST_PORT=${2:?}; shift 2 ;;  --rpc-port) RPC_PORT=${2:?}; shift 2 ;;
    --job-port) JOB_PORT=${2:?}; shift 2 ;;  --artifact-port) ARTIFACT_PORT=${2:?}; shift 2 ;;
    --expansion-port) EXPANSION_PORT=${2:?}; shift 2 ;;  --worker-port) WORKER_PORT=${2:?}; shift 2 ;;
    --slots) SLOTS=${2:?}; shift 2 ;;  --parallelism) PARALLELISM=${2:?}; shift 2 ;;
    --jm-memory) JM_MEMORY=${2:?}; shift 2 ;;  --tm-memory) TM_MEMORY=${2:?}; shift 2 ;;  --tm-off-heap) TM_OFF_HEAP=${2:?}; shift 2 ;;
    --no-job-server) js=0; shift ;;  --no-worker-pool) wp=0; shift ;;  --free-ports) free=1; shift ;;
    -h|--help) usage; exit 0 ;;  *) die "start: unknown option $1" ;;
  esac; done
  if ((free)); then  # six ports the kernel hands out now: held open together so no two are the same
    read -r REST_PORT RPC_PORT JOB_PORT ARTIFACT_PORT EXPANSION_PORT WORKER_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(6)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
  fi
  parse_name --name "$name"; inst=$(inst_dir "$NAME")
  mkdir -p "$CACHE/instances"; exec 8>"$CACHE/instances/.$NAME.lock"; flock 8
  # given > stored > default
  declare -A def=([REST_PORT]=8081 [RPC_PORT]=6123 [JOB_PORT]=8099 [ARTIFACT_PORT]=8098 [EXPANSION_PORT]=8097
                  [WORKER_PORT]=50000 [SLOTS]=2 [PARALLELISM]=1 [JM_MEMORY]=1024m [TM_MEMORY]=1536m [TM_OFF_HEAP]=0m)
  for k in "${!def[@]}"; do
    [[ -n "${!k}" ]] || printf -v "$k" '%s' "$(inst_get "$NAME" "$k")"
    [[ -n "${!k}" ]] || printf -v "$k" '%s' "${def[$k]}"
  done
  for k in REST_PORT RPC_PORT JOB_PORT ARTIFACT_PORT EXPANSION_PORT WORKER_PORT SLOTS PARALLELISM; do
    [[ "${!k}" =~ ^[0-9]+$ ]] || die "bad ${k,,} '${!k}'"
  done
  python=${python:-$(inst_get "$NAME" PYTHON)}; python=${python:-$(default_python)}
  [[ -x "$python" ]] || python=$(command -v "$python") || die "python '$python' not found"
  if part_pid "$NAME" jobmanager >/dev/null || part_pid "$NAME" taskmanager >/dev/null; then
    log "instance '$NAME' is (partly) running: stopping it first"; cmd_stop --name "$NAME"
  fi
  local ports=("$REST_PORT" "$RPC_PORT"); ((js)) && ports+=("$JOB_PORT" "$ARTIFACT_PORT" "$EXPANSION_PORT"); ((wp)) && ports+=("$WORKER_PORT")
  for k in "${ports[@]}"; do port_busy "$k" && die "port $k on 127.0.0.1 is already in use (see --help for the port options)"; done

  home=$(install_flink); ((js)) && jar=$(install_jobserver); T0=$EPOCHREALTIME
  mkdir -p "$inst"/{conf,log,run,tmp,artifacts}
  rm -f "$inst"/run/*.pid "$inst"/log/*
  {
    for k in "${!def[@]}"; do echo "$k=${!k}"; done
    printf 'PYTHON=%s\nFLINK_HOME=%s\nJOB_SERVER=%s\nWITH_JOB_SERVER=%s\nWITH_WORKER_POOL=%s\n' "$python" "$home" "${jar:-}" "$js" "$wp"
  } >"$inst/instance.env"
  write_config "$inst" "$NAME" "$home"

  log "starting '$NAME': Flink $FLINK_VERSION jobmanager + taskmanager (REST http://127.0.0.1:$REST_PORT)"
  # Separate JVMs, as on a real cluster; 8>&-: the daemons must not hold the start lock.
  flink_env "$home/bin/jobmanager.sh" start >"$inst/log/start-jobmanager.out" 2>&1 8>&- \
    || start_failed "jobmanager.sh start failed"
  flink_env "$home/bin/taskmanager.sh" start >"$inst/log/start-taskmanager.out" 2>&1 8>&- \
    || start_failed "taskmanager.sh start failed"
  if ((js)); then
    log "starting the Beam job server (job endpoint 127.0.0.1:$JOB_PORT) from $(basename "$jar")"
    (cd "$inst" && exec setsid "$(java_home)/bin/java" -Xmx512m -jar "$jar" --flink-master="127.0.0.1:$REST_PORT" \
       --job-host=127.0.0.1 --job-port="$JOB_PORT" --artifact-port="$ARTIFACT_PORT" --expansion-port="$EXPANSION_PORT" \
       --artifacts-dir="$inst/artifacts" </dev/null >"$inst/log/jobserver.log" 2>&1 8>&-) &
    echo $! >"$inst/run/jobserver.pid"
  fi
  if ((wp)); then
    log "starting the Python SDK worker pool on 127.0.0.1:$WORKER_PORT ($python)"
    # The pool starts each SDK worker as `python -c ...` from PATH: put this Python first.
    (cd "$inst" && exec env PATH="$(dirname "$python"):$PATH" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" \
       TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 \
       setsid "$python" -m apache_beam.runners.worker.worker_pool_main --service_port="$WORKER_PORT" \
       </dev/null >"$inst/log/workerpool.log" 2>&1 8>&-) &
    echo $! >"$inst/run/workerpool.pid"
  fi
  wait_ready "$js" "$wp"
}

rest_overview() { curl -sf -m 5 "http://127.0.0.1:$REST_PORT/overview" 2>/dev/null || true; }

wait_ready() {   # WITH_JOB_SERVER WITH_WORKER_POOL
  local deadline=$((SECONDS + START_TIMEOUT)) ov tms p
  while :; do
    local ok=1
    ov=$(rest_overview); tms=$(grep -oE '"taskmanagers":[0-9]+' <<<"$ov" | cut -d: -f2 || true)
    [[ "${tms:-0}" -ge 1 ]] || ok=0
    if (($1)); then grep -q "JobService started" "$(inst_dir "$NAME")/log/jobserver.log" 2>/dev/null || ok=0; fi
    if (($2)); then port_busy "$WORKER_PORT" || ok=0; fi
    if ((ok)); then
      log "instance '$NAME' is up after $(took): flink_master 127.0.0.1:$REST_PORT$( (($1)) && echo ", job endpoint 127.0.0.1:$JOB_PORT")$( (($2)) && echo ", worker pool 127.0.0.1:$WORKER_PORT")"
      cmd_args_for "$1" "$2"; return 0
    fi
    for p in jobmanager taskmanager; do part_pid "$NAME" "$p" >/dev/null || start_failed "the $p exited during startup"; done
    if (($1)); then part_pid "$NAME" jobserver >/dev/null || start_failed "the job server exited during startup"; fi
    if (($2)); then part_pid "$NAME" workerpool >/dev/null || start_failed "the worker pool exited during startup"; fi
    ((SECONDS < deadline)) || start_failed "not up within ${START_TIMEOUT}s"
    sleep 1
  done
}

start_failed() {
  log "ERROR: instance '$NAME': $1. Last log lines:"
  LINES_=25 print_logs >&2
  cmd_stop --name "$NAME" || true
  exit 1
}

print_logs() {
  local f inst; inst=$(inst_dir "$NAME")
  for f in "$inst"/log/*; do
    [[ -s "$f" ]] || continue
    echo "----- $f"; grep -v '^\s*at \|^\s*\.\.\. [0-9]* more' "$f" | tail -n "${LINES_:-40}"
  done
}

stop_pid() {   # PID WHAT [GROUP]
  local deadline=$((SECONDS + STOP_TIMEOUT)) target=$1
  [[ -n "${3:-}" ]] && target=-$1   # the whole process group (the pool's SDK workers, too)
  kill -TERM -- "$target" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do
    if ((SECONDS >= deadline)); then log "$2 still alive after ${STOP_TIMEOUT}s: SIGKILL"; kill -KILL -- "$target" 2>/dev/null || true; fi
    sleep 0.3
  done
}

cmd_stop() {
  local inst pid p any=0; parse_name "$@"; inst=$(inst_dir "$NAME"); T0=$EPOCHREALTIME
  [[ -d "$inst" ]] || { log "instance '$NAME' does not exist"; return 0; }
  for p in workerpool jobserver taskmanager jobmanager; do
    if pid=$(part_pid "$NAME" "$p"); then
      any=1; log "stopping the $p of '$NAME' (pid $pid)"
      case "$p" in workerpool|jobserver) stop_pid "$pid" "$p" group ;; *) stop_pid "$pid" "$p" ;; esac
    fi
  done
  rm -f "$inst"/run/*.pid
  ((any)) && log "stopped '$NAME' in $(took)" || log "instance '$NAME' is not running"
}

cmd_delete() { parse_name "$@"; cmd_stop --name "$NAME"; rm -rf "$(inst_dir "$NAME")"; log "deleted instance '$NAME'"; }

cmd_status() {
  local p pid bad=0 want; parse_name "$@"
  [[ -f "$(inst_dir "$NAME")/instance.env" ]] || { echo "$NAME: not created"; return 3; }
  for p in jobmanager taskmanager jobserver workerpool; do
    want=1
    [[ $p == jobserver && "$(inst_get "$NAME" WITH_JOB_SERVER)" == 0 ]] && want=0
    [[ $p == workerpool && "$(inst_get "$NAME" WITH_WORKER_POOL)" == 0 ]] && want=0
    if pid=$(part_pid "$NAME" "$p"); then echo "$NAME $p: running (pid $pid)"
    elif ((want)); then echo "$NAME $p: stopped"; bad=1
    else echo "$NAME $p: not started"; fi
  done
  ((bad == 0)) || return 3
}

cmd_args_for() {   # WITH_JOB_SERVER WITH_WORKER_POOL: the Beam args for this instance, one line
  local a=(--runner FlinkRunner --flink_master "127.0.0.1:$REST_PORT" --flink_version "$FLINK_MINOR")
  if (($1)); then a+=(--job_endpoint "127.0.0.1:$JOB_PORT"); else a+=(--flink_job_server_jar "$(install_jobserver)"); fi
  (($2)) && a+=(--environment_type EXTERNAL --environment_config "127.0.0.1:$WORKER_PORT")
  echo "${a[*]}"
}

cmd_args() {
  parse_name "$@"; [[ -f "$(inst_dir "$NAME")/instance.env" ]] || die "instance '$NAME' does not exist"
  REST_PORT=$(inst_get "$NAME" REST_PORT); JOB_PORT=$(inst_get "$NAME" JOB_PORT); WORKER_PORT=$(inst_get "$NAME" WORKER_PORT)
  cmd_args_for "$(inst_get "$NAME" WITH_JOB_SERVER)" "$(inst_get "$NAME" WITH_WORKER_POOL)"
}

cmd=${1:-}; (($#)) && shift
case "$cmd" in
  install) cmd_install "$@" ;;  start) cmd_start "$@" ;;  stop) cmd_stop "$@" ;;  status) cmd_status "$@" ;;
  args) cmd_args "$@" ;;  logs) parse_name "$@"; print_logs ;;  delete) cmd_delete "$@" ;;
  jobserver-jar) install_jobserver ;;  flink-home) install_flink ;;
  -h|--help|help) usage ;;  "") usage; exit 2 ;;  *) usage >&2; die "unknown command '$cmd'" ;;
esac
