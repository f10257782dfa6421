#!/usr/bin/env bash
# One-time (idempotent) setup for the lab:
#   - Java >= 17 and Maven (installed with apt if missing and we are root),
#   - PostgreSQL server binaries (initdb/postgres/pg_ctl; the lab runs its own private cluster),
#   - Apache Kafka broker jars, resolved from Maven Central via kafka/pom.xml into
#     ${TXLAB_CACHE:-$HOME/.cache/txlab}/kafka-<version>/libs (skipped when already there),
#   - the Toxiproxy server (fault injection for real deployments), built with `go install` into
#     ${TXLAB_CACHE:-$HOME/.cache/txlab}/bin/toxiproxy-server (skipped when already there).
# Works from any cwd: bash scripts/setup.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO/kafka/pom.xml"
CACHE="${TXLAB_CACHE:-${HOME:-/tmp}/.cache/txlab}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -1)"
[ -n "$KAFKA_VERSION" ] || { echo "setup: cannot read <kafka.version> from $POM" >&2; exit 1; }

log() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

java_major() { # prints the major version of `java` on PATH, or nothing
  command -v java >/dev/null 2>&1 || return 0
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -1
}
pg_bindir() { # newest /usr/lib/postgresql/<v>/bin holding initdb, postgres and pg_ctl
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 0
}

TOXIPROXY_VERSION=v2.12.0
TOXIPROXY="$CACHE/bin/toxiproxy-server"
go_any() { # prints the `go` on PATH, else /usr/local/go/bin/go, or nothing
  command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; } || true
}
go_bin() { # prints a `go` new enough for toxiproxy (>= 1.22), or nothing
  local g v
  for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
    [ -n "$g" ] && [ -x "$g" ] || continue
    v="$("$g" env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9]*\.[0-9]*\).*/\1/p')"
    [ -n "$v" ] && printf '%s\n1.22\n' "$v" | sort -V -C -r && { echo "$g"; return 0; }
  done
  return 0
}

# ---- (a)+(b) tools: collect what is missing, install it in one apt run ----------------
pkgs=()
jm="$(java_major)"
[ -n "$jm" ] && [ "$jm" -ge 17 ] || pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
[ -n "$(pg_bindir)" ] || pkgs+=(postgresql)
# Building librdkafka (bundled by the rdkafka crate) needs a C toolchain, make and zlib headers.
command -v cc >/dev/null 2>&1 || pkgs+=(gcc)
command -v make >/dev/null 2>&1 || pkgs+=(make)
[ -e /usr/include/zlib.h ] || pkgs+=(zlib1g-dev)
# Go builds the Toxiproxy server (only while it is not built yet).
[ -x "$TOXIPROXY" ] || [ -n "$(go_any)" ] || pkgs+=(golang-go)
command -v cargo >/dev/null 2>&1 || die "cargo not on PATH -- install the Rust toolchain (rustup) first"

if [ ${#pkgs[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
  fi
  if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; }; then
    die "missing: ${pkgs[*]} -- install with: sudo apt-get install -y ${pkgs[*]}"
  fi
  log "installing ${pkgs[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO mkdir -p /usr/share/man/man1   # slim Debian images lack it; the JRE's postinst fails without it
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  if [[ " ${pkgs[*]} " == *" postgresql "* ]] && command -v pg_lsclusters >/dev/null 2>&1; then
    # The Debian package creates (and, where services may start, starts) a default
    # cluster on port 5432. The lab runs its own private cluster: stop that one and
    # keep it from auto-starting.
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name _rest; do
      $SUDO pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
      echo manual | $SUDO tee "/etc/postgresql/$ver/$name/start.conf" >/dev/null 2>&1 || true
    done
  fi
fi

jm="$(java_major)"
[ -n "$jm" ] && [ "$jm" -ge 17 ] || die "java >= 17 not on PATH (found: ${jm:-none}) -- install with: sudo apt-get install -y openjdk-17-jre-headless"
command -v mvn >/dev/null 2>&1 || die "mvn not on PATH -- install with: sudo apt-get install -y maven"
PG_BIN="$(pg_bindir)"
[ -n "$PG_BIN" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin -- install with: sudo apt-get install -y postgresql"

# ---- (c) Kafka jars, cached; the marker (written last) records version + pom hash -----
KDIR="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$KDIR/libs"
MARKER="$KDIR/.complete"
want="kafka=$KAFKA_VERSION pom=$(sha256sum "$POM" | cut -d' ' -f1)"
if [ "$(cat "$MARKER" 2>/dev/null || true)" != "$want" ]; then
  log "resolving Apache Kafka $KAFKA_VERSION jars with Maven (first run only)"
  mkdir -p "$KDIR"
  rm -rf "$LIBS" "$LIBS.tmp" "$MARKER"
  # mvn output goes to a log (shown only on failure): Debian's mvn emits stray ANSI codes even with -q -B.
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS.tmp" >"$KDIR/mvn.log" 2>&1; then
    tail -n 30 "$KDIR/mvn.log" >&2
    die "mvn failed resolving Kafka jars (is Maven Central reachable?); full log: $KDIR/mvn.log"
  fi
  for j in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" log4j-core-*.jar log4j-slf4j-impl-*.jar; do
    compgen -G "$LIBS.tmp/$j" >/dev/null || die "expected jar $j missing after mvn"
  done
  mv "$LIBS.tmp" "$LIBS"
  echo "$want" > "$MARKER"
fi

# ---- (d) Toxiproxy server, built from source with Go into $CACHE/bin --------------------
if [ ! -x "$TOXIPROXY" ]; then
  GO="$(go_bin)"
  [ -n "$GO" ] || die "toxiproxy $TOXIPROXY_VERSION needs Go >= 1.22 (found: $(g="$(go_any)"; [ -n "$g" ] && "$g" version || echo none)); Debian's golang-go may be older: install Go from https://go.dev/dl/ into /usr/local/go"
  log "building toxiproxy-server $TOXIPROXY_VERSION with $GO (first run only)"
  mkdir -p "$CACHE/bin"
  GOBIN_TMP="$(mktemp -d "$CACHE/bin/.toxiproxy.XXXXXX")"
  if ! GOBIN="$GOBIN_TMP" "$GO" install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >"$CACHE/bin/toxiproxy-build.log" 2>&1; then
    rm -rf "$GOBIN_TMP"
    tail -n 30 "$CACHE/bin/toxiproxy-build.log" >&2
    die "go install of toxiproxy failed (is the Go module proxy reachable?); full log: $CACHE/bin/toxiproxy-build.log"
  fi
  mv "$GOBIN_TMP/server" "$TOXIPROXY"   # the go binary is named after its package, `server`
  rm -rf "$GOBIN_TMP"
fi

# ---- (e) summary -----------------------------------------------------------------------
echo "java: $(command -v java) ($jm)"
echo "mvn: $(command -v mvn)"
echo "postgres bin: $PG_BIN"
echo "kafka version: $KAFKA_VERSION"
echo "kafka libs: $LIBS"
echo "kafka log4j2 config: $REPO/kafka/log4j2.properties"
echo "toxiproxy server: $TOXIPROXY ($TOXIPROXY_VERSION)"
