#!/usr/bin/env bash
# Assemble a real single-node OpenSearch (+ k-NN, ML Commons, neural-search) from Maven Central
# artifacts, cache it, and run named local instances on 127.0.0.1 as a non-root user.
# No Docker and no downloads outside Maven Central. See scripts/opensearch-local.md.
set -euo pipefail

VERSION="${OPENSEARCH_VERSION:-2.19.6}"   # newest 2.19.x with every artifact on Central; 2.x runs on JDK 17
CACHE="${NEURAL_INGEST_CACHE:-$HOME/.cache/neural-ingest}/opensearch"
VDIR="$CACHE/$VERSION"
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATIVES_SRC="${NEURAL_INGEST_KNN_NATIVES:-$ROOT_DIR/../shared/knn-natives}"   # k-NN JNI + faiss sources
NATIVES_CACHE="${NEURAL_INGEST_CACHE:-$HOME/.cache/neural-ingest}/knn-natives"
# Optimised, as a production node's libraries are: the build script's default (no -O flag, -O0) builds a
# faiss HNSW graph many times slower, so a node stalls for minutes at each flush of a large load.
NATIVES_BUILD="${NEURAL_INGEST_KNN_BUILD_TYPE:-Release}"
# faiss commit (short) that each k-NN release pins as its submodule; the source tarball is faiss-<sha>.tgz.
declare -A FAISS_PIN=([2.19.6.0]=0cbc2a88 [3.5.0.0]=5616caad)
START_TIMEOUT="${OPENSEARCH_START_TIMEOUT:-180}"
STOP_TIMEOUT="${OPENSEARCH_STOP_TIMEOUT:-60}"
RUN_USER="${OPENSEARCH_RUN_USER:-opensearch}"   # only used when invoked as root
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
# Bump when the assembled layout changes: dists, artifact lists and fetch poms are named per revision,
# so a new one is assembled beside the old, which running instances keep using (they run from it).
# r2: + reindex module. r3: faiss natives in plugins/opensearch-knn/lib (dist-<set>-r3-faiss<sha>), modules
# the core zip already ships (3.x) are kept as they are.
REV=3
export LC_NUMERIC=C   # $EPOCHREALTIME and awk must agree on the decimal point
T0=$EPOCHREALTIME

log() { printf '[opensearch-local] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
took() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

usage() {
  cat <<EOF
Usage: $0 COMMAND [options]

  install [--plugins all|knn|none]   fetch artifacts (Maven Central) and assemble a cached distribution
  start   [--name N] [--port P] [--heap 1g] [--plugins SET] [--setting key=value]... [--clean]
                                     start instance N (default: default) and wait until healthy
  stop    [--name N]                 stop instance N (SIGTERM, SIGKILL after ${STOP_TIMEOUT}s)
  status  [--name N]                 print running/stopped and URL; exit 0 only if running
  url     [--name N]                 print http://127.0.0.1:PORT
  list                               list known instances
  delete  [--name N]                 stop N and remove its directory (data, logs, stored settings)

Plugin sets: all = job-scheduler, k-NN, ml-commons, neural-search (default); knn = k-NN only;
none = core only (3.x: knn or none; Central has no 3.x ml-commons/neural-search). Modules mapper-extras
(rank_features), lang-painless and reindex are always there (added on 2.x, shipped by 3.x).
With k-NN, the faiss libraries are built once from \$NEURAL_INGEST_KNN_NATIVES (now $NATIVES_SRC),
cached in $NATIVES_CACHE and installed; without them faiss is unavailable (node attribute
knn_faiss: false, shown by status) and a faiss field would crash the node.
start reuses the instance's last port/heap/plugins/--setting list unless given again;
data persists across stop/start; --clean wipes data and logs first.

Environment: OPENSEARCH_VERSION ($VERSION), NEURAL_INGEST_CACHE (cache root, now ${CACHE%/opensearch}),
OPENSEARCH_START_TIMEOUT ($START_TIMEOUT), OPENSEARCH_STOP_TIMEOUT, OPENSEARCH_RUN_USER (used when root),
OPENSEARCH_JAVA_HOME / JAVA_HOME (default: the java on PATH, or the newest JDK in /usr/lib/jvm or /opt when
that is too old: 3.x needs 21+), OPENSEARCH_JAVA_OPTS (extra JVM flags), NEURAL_INGEST_KNN_NATIVES,
NEURAL_INGEST_KNN_BUILD_TYPE (Release: the faiss libraries optimised, as in production; "" for the build script's -O0).
EOF
}

# Install order matters: a plugin must come after the plugins it extends
# (ml extends job-scheduler, neural-search extends k-NN; k-NN extends the lang-painless module).
plugin_list() {
  case "$1" in
    all) echo "opensearch-job-scheduler opensearch-knn opensearch-ml-plugin neural-search" ;;
    knn) echo "opensearch-knn" ;;
    none) echo "" ;;
    *) die "unknown plugin set '$1' (all|knn|none)" ;;
  esac
}

jdk_major() {   # JDK_HOME: its feature version (17, 21, 25), from the release file
  sed -n 's/^JAVA_VERSION="\{0,1\}\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null | head -n1
}

java_home() {   # 2.x runs on 17+; 3.x needs 21+: a JAVA_HOME too old for it is passed over for a newer JDK
  local need=17 j d best="" bm=0 m; [[ ${VERSION%%.*} -ge 3 ]] && need=21
  if [[ -n "${OPENSEARCH_JAVA_HOME:-}" ]]; then echo "$OPENSEARCH_JAVA_HOME"; return; fi
  if [[ -n "${JAVA_HOME:-}" ]]; then m=$(jdk_major "$JAVA_HOME"); ((${m:-0} >= need)) && { echo "$JAVA_HOME"; return; }; fi
  if j=$(command -v java); then
    d=$(dirname "$(dirname "$(readlink -f "$j")")")   # bin/opensearch needs a JAVA_HOME, not just java on PATH
    m=$(jdk_major "$d"); ((${m:-0} >= need)) && { echo "$d"; return; }
  fi
  for d in /usr/lib/jvm/* /opt/*jdk* /opt/java/*; do   # e.g. the Temurin 25 JDK beside Debian's 17
    [[ -x "$d/bin/java" && ! -L "$d" ]] || continue; m=$(jdk_major "$d"); m=${m:-0}
    ((m >= need && m > bm)) && { best=$d; bm=$m; }
  done
  [[ -n "$best" ]] || die "no JDK $need+ found for OpenSearch $VERSION: install one or set OPENSEARCH_JAVA_HOME"
  echo "$best"
}

dep() {   # dep GROUP ARTIFACT VERSION TYPE [EXCLUSIONS-XML]
  echo "<dependency><groupId>$1</groupId><artifactId>$2</artifactId><version>$3</version><type>$4</type>${5:+<exclusions>$5</exclusions>}</dependency>"
}

# Resolve artifacts into a Maven repo inside the cache (no second copy), list their paths in $1.
fetch_artifacts() {   # LIST FETCH-NAME DEPS-XML
  local list=$1 fetch=$VDIR/fetch-$2-r$REV deps=$3
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch artifacts from Maven Central)"
  mkdir -p "$fetch"
  cat >"$fetch/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local.neural-ingest</groupId><artifactId>opensearch-fetch</artifactId><version>1</version>
<packaging>pom</packaging><dependencies>
$deps
</dependencies></project>
EOF
  local mvn=(mvn -B -q -f "$fetch/pom.xml" -Dmaven.repo.local="$VDIR/m2" "$DEP_PLUGIN:build-classpath" -Dmdep.outputFile="$list.tmp")
  if "${mvn[@]}" -o >"$fetch/mvn.log" 2>&1; then log "resolved artifacts ($2) offline from $VDIR/m2"
  else
    log "fetching OpenSearch $VERSION artifacts ($2) from Maven Central ..."
    "${mvn[@]}" >"$fetch/mvn.log" 2>&1 \
      || { tail -n 30 "$fetch/mvn.log" >&2; die "artifact download failed (log: $fetch/mvn.log)"; }
  fi
  tr ':' '\n' <"$list.tmp" >"$list" && rm -f "$list.tmp"
}

cached_list() { [[ -f "$1" ]] && (while read -r f; do [[ -f "$f" ]] || exit 1; done <"$1"); }

# The core zip and the plugin zips of a set.
core_artifacts() {   # LIST SET
  local p deps none='<exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>'
  deps=$(dep org.opensearch.distribution.integ-test-zip opensearch "$VERSION" zip)
  for p in $(plugin_list "$2"); do deps+=$'\n'"$(dep org.opensearch.plugin "$p" "$VERSION.0" zip "$none")"; done
  if cached_list "$1"; then log "using cached artifacts ($1)"; else fetch_artifacts "$1" "$2" "$deps"; fi
}

# Jars of the modules the core zip lacks (the 2.x integ-test zip ships only transport-netty4; 3.x ships them).
module_artifacts() {   # LIST MODULE...
  local list=$1 m deps="" none='<exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>'; shift
  for m in "$@"; do case "$m" in
    mapper-extras) deps+=$(dep org.opensearch.plugin mapper-extras-client "$VERSION" jar "$none") ;;
    lang-painless) deps+=$(dep org.opensearch.plugin lang-painless "$VERSION" jar '<exclusion><groupId>org.opensearch</groupId><artifactId>opensearch</artifactId></exclusion>') ;;
    reindex) deps+=$(dep org.opensearch.plugin reindex-client "$VERSION" jar '<exclusion><groupId>org.opensearch</groupId><artifactId>opensearch-common</artifactId></exclusion><exclusion><groupId>io.projectreactor</groupId><artifactId>*</artifactId></exclusion><exclusion><groupId>org.reactivestreams</groupId><artifactId>*</artifactId></exclusion>') ;;
    *) die "no Maven recipe for module $m" ;;
  esac; deps+=$'\n'; done
  # ^ lang-painless brings antlr4-runtime, asm*, painless-spi; reindex brings the REST client (for
  # reindex-from-remote): opensearch-rest-client, opensearch-ssl-config, Apache httpclient/httpcore
  # (+nio, async), commons-codec, commons-logging. The excluded jars are already in lib/ (jar hell).
  if cached_list "$list"; then log "using cached artifacts ($list)"; else fetch_artifacts "$list" modules "$deps"; fi
}

# Write a module descriptor the way the real distribution ships it.
write_descriptor() {   # DIR NAME CLASSNAME DESCRIPTION [EXTENDED]
  cat >"$1/plugin-descriptor.properties" <<EOF
description=$4
version=$VERSION
name=$2
classname=$3
java.version=11
opensearch.version=$VERSION
custom.foldername=
extended.plugins=${5:-}
has.native.controller=false
EOF
}

# The plugin class was renamed in 3.x (PainlessPlugin -> PainlessModulePlugin): read it from the jar.
plugin_class() {   # JAR PACKAGE-PATH NAME...
  local jar=$1 pkg=$2 n listing; shift 2; listing=$(unzip -Z1 "$jar")
  for n in "$@"; do grep -qx "$pkg/$n.class" <<<"$listing" && { echo "${pkg//\//.}.$n"; return; }; done
  die "no plugin class ($*) in $jar"
}

# --- k-NN native libraries (faiss) ------------------------------------------------------------
# The k-NN zips on Maven Central have no native libraries, and the first write into a faiss field of a
# node without them kills the node. Built once from $NATIVES_SRC into $NATIVES_CACHE/<k-NN>-<faiss sha>-<build type>/,
# then copied into each assembled distribution. Sets NATIVES (that dir) or NATIVES_WHY (one line).
knn_natives() {
  local kv=$VERSION.0 pin jni ftgz dir tmp t0 missing jh
  NATIVES=""; NATIVES_WHY=""; pin=${FAISS_PIN[$kv]:-}
  [[ -n "$pin" ]] || { NATIVES_WHY="no faiss commit known for k-NN $kv (FAISS_PIN in $0)"; return; }
  dir=$NATIVES_CACHE/$kv-$pin-${NATIVES_BUILD,,}; jni=$NATIVES_SRC/knn-$kv-jni.tgz; ftgz=$NATIVES_SRC/faiss-$pin.tgz
  if [[ ! -f "$dir/.complete" ]]; then
    if [[ ! -f "$jni" || ! -f "$ftgz" || ! -f "$NATIVES_SRC/build-knn-natives.sh" ]]; then
      NATIVES_WHY="no k-NN $kv native sources (knn-$kv-jni.tgz, faiss-$pin.tgz) in $NATIVES_SRC; set NEURAL_INGEST_KNN_NATIVES"
      return
    fi
    grep -qw avx2 /proc/cpuinfo || { NATIVES_WHY="the CPU has no AVX2, which the faiss build needs"; return; }
    mkdir -p "$NATIVES_CACHE"; exec 7>"$NATIVES_CACHE/.$kv-$pin.lock"; flock 7   # one builder per key
    if [[ ! -f "$dir/.complete" ]]; then
      jh=$(java_home); tmp=$(mktemp -d "$NATIVES_CACHE/.build-$kv-$pin.XXXXXX"); t0=$SECONDS
      log "building the k-NN $kv faiss libraries (faiss $pin) once into $dir; this takes a few minutes ..."
      if JAVA_HOME="$jh" WORK="$tmp/work" BUILD_TYPE="$NATIVES_BUILD" bash "$NATIVES_SRC/build-knn-natives.sh" "$jni" "$ftgz" "$tmp/lib" "$kv" >"$tmp/build.log" 2>&1; then
        rm -rf "$tmp/work"
        printf 'KNN_VERSION=%s\nFAISS=%s\nBUILD_TYPE=%s\nBUILD_SECONDS=%s\nBUILT=%s\n' "$kv" "$pin" "$NATIVES_BUILD" $((SECONDS - t0)) "$(date -u +%FT%TZ)" >"$tmp/build.info"
        touch "$tmp/.complete"; chmod -R a+rX "$tmp"; mv -T "$tmp" "$dir"   # atomic: readers see all or nothing
        log "built the faiss libraries in $((SECONDS - t0))s: $dir"
      else
        mv "$tmp/build.log" "$NATIVES_CACHE/build-$kv-$pin.failed.log"; rm -rf "$tmp"; exec 7>&-
        tail -n 15 "$NATIVES_CACHE/build-$kv-$pin.failed.log" >&2
        NATIVES_WHY="building the faiss libraries failed (log: $NATIVES_CACHE/build-$kv-$pin.failed.log)"; return
      fi
    fi
    exec 7>&-
  fi
  # runtime dependencies (libgomp1, libgfortran5): a library that cannot load would kill the node later
  missing=$(ldd "$dir"/lib/*.so 2>/dev/null | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')
  [[ -z "$missing" ]] || { NATIVES_WHY="the faiss libraries need ${missing% } (apt-get install libgomp1 libgfortran5)"; return; }
  NATIVES=$dir
}

has_knn() { [[ " $(plugin_list "$1") " == *" opensearch-knn "* ]]; }

natives_for() {   # SET: sets NATIVES / NATIVES_WHY for nodes of that plugin set (call outside $(...))
  NATIVES=""; NATIVES_WHY="no k-NN plugin in plugin set $1"
  has_knn "$1" || return 0
  knn_natives
  [[ -z "$NATIVES_WHY" ]] || log "faiss is unavailable on OpenSearch $VERSION nodes: $NATIVES_WHY (use engine lucene)"
}

cmd_install() {
  local set=all
  while (($#)); do case "$1" in
    --plugins) set=${2:?--plugins needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "install: unknown option $1" ;;
  esac; done
  plugin_list "$set" >/dev/null; natives_for "$set"
  install_dist "$set" >/dev/null
}

# Modules neural-ingest needs. The 2.x integ-test zip ships only transport-netty4, so they are built
# from their Maven jars; a zip that already ships one (3.x ships all three) keeps its own.
add_modules() {   # HOME TMP
  local home=$1 tmp=$2 need=() m f mod list="$VDIR/artifacts-modules-r$REV.txt"
  for m in mapper-extras lang-painless reindex; do [[ -d "$home/modules/$m" ]] || need+=("$m"); done
  ((${#need[@]})) || { log "the core zip ships mapper-extras, lang-painless and reindex: kept as shipped"; return; }
  log "adding modules ${need[*]} from their Maven jars"
  module_artifacts "$list" "${need[@]}"
  for m in "${need[@]}"; do mod="$home/modules/$m"; mkdir -p "$mod"; case "$m" in
    mapper-extras)
      cp "$(grep '/mapper-extras-client-' "$list")" "$mod/"
      write_descriptor "$mod" mapper-extras "$(plugin_class "$mod"/*.jar org/opensearch/index/mapper MapperExtrasModulePlugin MapperExtrasPlugin)" \
        "Adds advanced field mappers (rank_features, scaled_float, ...)" ;;
    lang-painless)
      # Same layout as the real distribution: the painless SPI jar sits in the module dir, so plugins
      # that extend lang-painless (k-NN) see it through the parent class loader.
      grep -E '/(lang-painless|opensearch-scripting-painless-spi|antlr4-runtime|asm(-[a-z]+)?)-[0-9][^/]*\.jar$' "$list" \
        | while read -r f; do cp "$f" "$mod/"; done
      write_descriptor "$mod" lang-painless "$(plugin_class "$mod/lang-painless-$VERSION.jar" org/opensearch/painless PainlessModulePlugin PainlessPlugin)" \
        "An easy, safe and fast scripting language for OpenSearch"
      # painless compiles scripts to classes at runtime: same grants as the upstream module policy
      printf 'grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n  permission java.lang.RuntimePermission "getClassLoader";\n};\n' >"$mod/plugin-security.policy" ;;
    reindex)
      # _reindex, _update_by_query, _delete_by_query (ML Commons deletes models with the latter).
      grep -E '/(reindex-client|opensearch-rest-client|opensearch-ssl-config|httpclient|httpcore|httpcore-nio|httpasyncclient|commons-codec|commons-logging)-[0-9][^/]*\.jar$' "$list" \
        | while read -r f; do cp "$f" "$mod/"; done
      write_descriptor "$mod" reindex "$(plugin_class "$mod/reindex-client-$VERSION.jar" org/opensearch/index/reindex ReindexModulePlugin ReindexPlugin)" \
        "The Reindex module adds APIs to reindex from one index to another or update documents in place."
      # Upstream module policy: reindex-from-remote opens sockets through the REST client.
      cat >"$mod/plugin-security.policy" <<'EOF'
grant {
  permission java.net.SocketPermission "*", "connect";
};
grant codeBase "${codebase.opensearch-rest-client}" {
  permission java.net.NetPermission "getProxySelector";
};
grant codeBase "${codebase.httpasyncclient}" {
  permission java.net.NetPermission "getProxySelector";
};
EOF
      ;;
  esac; done
}

install_dist() {   # SET (after natives_for SET): prints the distribution dir
  local set=$1 dist list="$VDIR/artifacts-$1-r$REV.txt" jh tmp home f p
  dist="$VDIR/dist-$set-r$REV${NATIVES:+-faiss-${NATIVES##*/}}"   # with the natives: its own dist (per build of them)
  if [[ -f "$dist/.complete" ]]; then log "OpenSearch $VERSION ($set) already installed: $dist"; echo "$dist"; return; fi
  command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
  mkdir -p "$VDIR"; exec 9>"$VDIR/.install.lock"; flock 9   # one assembler at a time
  if [[ -f "$dist/.complete" ]]; then echo "$dist"; return; fi
  core_artifacts "$list" "$set"
  jh=$(java_home); tmp=$(mktemp -d "$VDIR/.assemble.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
  unzip -q "$(grep '/opensearch-[0-9.]*\.zip$' "$list")" -d "$tmp"
  home="$tmp/opensearch-$VERSION"; [[ -d "$home" ]] || die "unexpected zip layout in $tmp"
  add_modules "$home" "$tmp"
  for p in $(plugin_list "$set"); do
    log "installing plugin $p"
    f=$(grep "/$p-$VERSION\.0\.zip$" "$list")
    OPENSEARCH_JAVA_HOME="$jh" "$home/bin/opensearch-plugin" install --batch "file://$f" >"$tmp/plugin-$p.log" 2>&1 \
      || { cat "$tmp/plugin-$p.log" >&2; die "installing $p failed"; }
  done
  if [[ -n "$NATIVES" ]]; then   # where the official distribution has them; start adds -Djava.library.path
    mkdir -p "$home/plugins/opensearch-knn/lib"; cp -a "$NATIVES/lib/." "$home/plugins/opensearch-knn/lib/"
    log "installed the faiss libraries from $NATIVES"
  fi
  chmod -R a+rX "$home"   # readable by the unprivileged run user
  rm -rf "$dist"; touch "$home/.complete"; mv "$home" "$dist"
  rm -rf "$tmp"; trap - EXIT
  log "installed OpenSearch $VERSION ($set) in $(took): $dist ($(du -sh "$CACHE" | cut -f1) cache)"
  for f in "$VDIR/dist-$set" "$VDIR/dist-$set"-r*; do   # never removed here: running instances use them
    [[ -d "$f" && "$f" != "$dist" ]] && log "older assembly $f kept for instances started from it; delete it once none runs"
  done
  echo "$dist"
}

# --- instances -------------------------------------------------------------------------------
inst_dir() { echo "$CACHE/instances/$1"; }
inst_get() { local f; f="$(inst_dir "$1")/instance.env"; [[ -f "$f" ]] && sed -n "s/^$2=//p" "$f" | tail -n1; return 0; }
running_pid() {   # prints the pid if instance $1 is alive (pid file + cmdline check against pid reuse)
  local inst pid; inst=$(inst_dir "$1")
  [[ -f "$inst/opensearch.pid" ]] || return 1
  pid=$(tr -dc '0-9' <"$inst/opensearch.pid"); [[ -n "$pid" ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "opensearch.path.conf=$inst/config" || return 1
  echo "$pid"
}

healthy() { curl -sf -m 10 "http://127.0.0.1:$1/_cluster/health?wait_for_status=yellow&timeout=${2:-1s}" 2>/dev/null | grep -qE '"status":"(green|yellow)"'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_user() { if ((EUID == 0)); then setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups "$@"; else "$@"; fi; }

# As root: create the run user and make sure it can reach the cache (e.g. /root is mode 700).
prepare_user() {
  ((EUID == 0)) || return 0
  id -u "$RUN_USER" >/dev/null 2>&1 || { log "creating system user $RUN_USER"; useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER"; }
  local d="" part parts
  as_user test -r "$1/bin/opensearch" && return 0
  IFS=/ read -ra parts <<<"${1#/}"
  for part in "${parts[@]}"; do   # top-down, so only the real blocker gets changed
    d+="/$part"; as_user test -x "$d" || { log "granting $RUN_USER traverse-only access (o+x) to $d"; chmod o+x "$d"; }
  done
  as_user test -r "$1/bin/opensearch" || die "$RUN_USER cannot read $1; set NEURAL_INGEST_CACHE to a shared path"
}

# The ML memory breakers are off (threshold 100): a small dev node passes 85% heap between collections and
# ML Commons then refuses deploys at random ("Memory Circuit Breaker is open").
write_config() {   # INST NAME PORT SETTINGS-FILE DIST FAISS(true|false)
  local inst=$1 base kv key
  base="cluster.name: neural-ingest-$2
node.name: $2
network.host: 127.0.0.1
http.port: $3
transport.port: $(($3 + 100))-$(($3 + 199))
discovery.type: single-node
node.attr.knn_faiss: $6
path.data: $inst/data
path.logs: $inst/logs
cluster.routing.allocation.disk.threshold_enabled: false
plugins.ml_commons.only_run_on_ml_node: false
plugins.ml_commons.native_memory_threshold: 100
plugins.ml_commons.jvm_heap_memory_threshold: 100
plugins.ml_commons.allow_registering_model_via_url: true
plugins.ml_commons.connector.private_ip_enabled: true
plugins.ml_commons.trusted_connector_endpoints_regex: ['^https?://127\.0\.0\.1.*', '^https?://localhost.*', '^https?://\[::1\].*']"
  [[ -d "$5/plugins/opensearch-ml" ]] \
    || base=$(grep -v '^plugins\.ml_commons\.' <<<"$base")   # unknown settings are fatal without ml
  while IFS= read -r kv; do   # --setting overrides a base line with the same key
    [[ -n "$kv" ]] || continue; key=${kv%%=*}
    base=$(awk -v k="$key:" 'index($0, k) != 1' <<<"$base")$'\n'"$key: ${kv#*=}"
  done <"$4"
  printf '# generated by opensearch-local.sh; edits are overwritten on start\n%s\n' "$base" >"$inst/config/opensearch.yml"
}

parse_name() {
  NAME=default
  while (($#)); do case "$1" in
    --name) NAME=${2:?--name needs a value}; shift 2 ;;  -h|--help) usage; exit 0 ;;  *) die "unknown option $1" ;;
  esac; done
  [[ "$NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad instance name '$NAME'"
}

cmd_start() {
  local name=default port="" heap="" set="" clean=0 settings=() inst dist pid jh
  while (($#)); do case "$1" in
    --name) name=${2:?}; shift 2 ;;  --port) port=${2:?}; shift 2 ;;  --heap) heap=${2:?}; shift 2 ;;
    --plugins) set=${2:?}; shift 2 ;;  --setting) [[ "${2:-}" == *=* ]] || die "--setting needs key=value"; settings+=("$2"); shift 2 ;;
    --clean) clean=1; shift ;;  -h|--help) usage; exit 0 ;;  *) die "start: unknown option $1" ;;
  esac; done
  parse_name --name "$name"; inst=$(inst_dir "$name")
  mkdir -p "$CACHE/instances"; exec 8>"$CACHE/instances/.$name.lock"; flock 8   # serialize starts of one name
  if [[ -z "${OPENSEARCH_VERSION:-}" && -n "$(inst_get "$name" VERSION)" ]]; then   # its data needs its version
    VERSION=$(inst_get "$name" VERSION); VDIR="$CACHE/$VERSION"
  fi
  port=${port:-$(inst_get "$name" PORT)}; port=${port:-9200}; heap=${heap:-$(inst_get "$name" HEAP)}; heap=${heap:-1g}
  set=${set:-$(inst_get "$name" PLUGINS)}; set=${set:-all}
  [[ "$port" =~ ^[0-9]+$ ]] || die "bad port '$port'"; [[ "$heap" =~ ^[0-9]+[kmgKMG]?$ ]] || die "bad heap '$heap'"
  if pid=$(running_pid "$name"); then
    if ((clean)); then log "--clean: stopping running instance '$name' first"; cmd_stop --name "$name"
    elif healthy "$(inst_get "$name" PORT)"; then
      log "instance '$name' already running and healthy (pid $pid)"; echo "http://127.0.0.1:$(inst_get "$name" PORT)"; return 0
    else log "instance '$name' is running (pid $pid) but not healthy yet; waiting"; wait_healthy "$name" "$pid" "$(inst_get "$name" PORT)"; return; fi
  fi
  port_busy "$port" && die "port $port on 127.0.0.1 is already in use (pick another with --port)"

  natives_for "$set"; dist=$(install_dist "$set"); T0=$EPOCHREALTIME
  prepare_user "$dist"
  mkdir -p "$inst"/{config,data,logs,tmp}
  if ((clean)); then log "--clean: wiping data and logs of '$name'"; rm -rf "${inst:?}"/data/* "${inst:?}"/logs/*; fi
  if [[ ! -f "$inst/config/jvm.options" || "$(inst_get "$name" DIST)" != "$dist" ]]; then
    cp -a "$dist/config/." "$inst/config/"
    # jvm.options uses cwd-relative paths (logs/gc.log, heap dumps): pin them into the instance.
    sed -i -e "s#=logs/#=$inst/logs/#g" -e "s#:logs/#:$inst/logs/#g" -e "s#HeapDumpPath=data#HeapDumpPath=$inst/data#" "$inst/config/jvm.options"
  fi
  if ((${#settings[@]})); then printf '%s\n' "${settings[@]}" >"$inst/settings.list"; fi
  touch "$inst/settings.list"
  local faiss=false libs="$dist/plugins/opensearch-knn/lib" jopts=""
  if [[ -f "$libs/libopensearchknn_faiss.so" ]]; then faiss=true; jopts="-Djava.library.path=$libs"; NATIVES_WHY=""; fi
  printf 'PORT=%s\nHEAP=%s\nPLUGINS=%s\nVERSION=%s\nDIST=%s\nFAISS=%s\nFAISS_WHY=%s\n' \
    "$port" "$heap" "$set" "$VERSION" "$dist" "$faiss" "$NATIVES_WHY" >"$inst/instance.env"
  write_config "$inst" "$name" "$port" "$inst/settings.list" "$dist" "$faiss"
  ((EUID == 0)) && chown -R "$RUN_USER:" "$inst"
  rm -f "$inst/opensearch.pid"
  ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # fewer fd warnings
  jh=$(java_home)
  log "starting '$name' (OpenSearch $VERSION, plugins: $set, heap $heap) on http://127.0.0.1:$port"
  # setsid: own session, survives the caller's terminal; -q: log to files only; cwd = dist home
  # because bin/opensearch calls bin/opensearch-keystore relative to it.
  local runas=(); ((EUID != 0)) || runas=(setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups)
  (cd "$dist" && exec env HOME="$inst" OPENSEARCH_JAVA_HOME="$jh" OPENSEARCH_PATH_CONF="$inst/config" \
     OPENSEARCH_TMPDIR="$inst/tmp" OPENSEARCH_JAVA_OPTS="-Xms$heap -Xmx$heap $jopts ${OPENSEARCH_JAVA_OPTS:-}" \
     setsid -w "${runas[@]}" ./bin/opensearch -q -p "$inst/opensearch.pid" \
     </dev/null >"$inst/logs/console.out" 2>&1 8>&-) &   # 8>&-: the node must not hold the start lock
  wait_healthy "$name" "$!" "$port"
}

wait_healthy() {   # NAME PID PORT
  local inst deadline s; inst=$(inst_dir "$1"); deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if healthy "$3" 2s; then
      s=$(curl -sf "http://127.0.0.1:$3/_cluster/health" | grep -oE '"status":"[a-z]+"' | cut -d'"' -f4)
      log "instance '$1' is healthy ($s) after $(took): http://127.0.0.1:$3 (pid $(running_pid "$1" || echo "$2"), logs $inst/logs)"
      echo "http://127.0.0.1:$3"; return 0
    fi
    kill -0 "$2" 2>/dev/null || start_failed "$1" "process exited during startup"
    ((SECONDS < deadline)) || start_failed "$1" "not healthy within ${START_TIMEOUT}s"
    sleep 1
  done
}

start_failed() {
  local inst f; inst=$(inst_dir "$1")
  log "ERROR: instance '$1': $2. Last log lines:"
  for f in "$inst/logs/console.out" "$inst/logs/neural-ingest-$1.log"; do   # the main log last: most useful
    [[ -s "$f" ]] && { echo "----- $f" >&2; tail -n 25 "$f" >&2; }
  done
  running_pid "$1" >/dev/null && cmd_stop --name "$1"
  exit 1
}

cmd_stop() {
  local pid deadline inst; parse_name "$@"; inst=$(inst_dir "$NAME"); T0=$EPOCHREALTIME
  pid=$(running_pid "$NAME") || { log "instance '$NAME' is not running"; rm -f "$inst/opensearch.pid"; return 0; }
  log "stopping '$NAME' (pid $pid)"; kill -TERM "$pid"
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then log "still alive after ${STOP_TIMEOUT}s: SIGKILL"; kill -KILL "$pid"; fi
    sleep 0.5
  done
  rm -f "$inst/opensearch.pid"; log "stopped '$NAME' in $(took)"
}

faiss_line() {   # NAME: the instance's faiss state (also the node attribute knn_faiss)
  case "$(inst_get "$1" FAISS)" in
    true) echo "  faiss: available (OpenSearch $(inst_get "$1" VERSION))" ;;
    false) echo "  faiss: unavailable (OpenSearch $(inst_get "$1" VERSION)): $(inst_get "$1" FAISS_WHY)" ;;
    *) echo "  faiss: unknown, assume unavailable (started by an older opensearch-local.sh)" ;;
  esac
}

cmd_status() {
  local pid port; parse_name "$@"; port=$(inst_get "$NAME" PORT)
  [[ -n "$port" ]] || { echo "$NAME: not created"; return 3; }
  if pid=$(running_pid "$NAME"); then
    if healthy "$port"; then echo "$NAME: running (healthy, pid $pid) http://127.0.0.1:$port"
    else echo "$NAME: running (not healthy yet, pid $pid) http://127.0.0.1:$port"; fi
    faiss_line "$NAME"
  else echo "$NAME: stopped http://127.0.0.1:$port"; faiss_line "$NAME"; return 3; fi
}

cmd_delete() {   # stop and remove the whole instance (data, logs, stored port/heap/settings)
  parse_name "$@"; cmd_stop --name "$NAME"; rm -rf "$(inst_dir "$NAME")"; log "deleted instance '$NAME'"
}
cmd_url() { local port; parse_name "$@"; port=$(inst_get "$NAME" PORT); echo "http://127.0.0.1:${port:-9200}"; }
cmd_list() { local d; for d in "$CACHE"/instances/*/; do if [[ -d "$d" ]]; then cmd_status --name "$(basename "$d")" || true; fi; done; }

cmd=${1:-}; (($#)) && shift
case "$cmd" in
  install) cmd_install "$@" ;;  start) cmd_start "$@" ;;  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;  url) cmd_url "$@" ;;  list) cmd_list ;;  delete) cmd_delete "$@" ;;
  -h|--help|help) usage ;;  "") usage; exit 2 ;;  *) usage >&2; die "unknown command '$cmd'" ;;
esac
