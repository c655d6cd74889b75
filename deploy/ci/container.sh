#!/usr/bin/env bash
# The server image built and run for real, as an operator would on a fresh Debian machine (root):
#
#   bash deploy/ci/container.sh [--fresh] [--startup "5 20"]
#
# 1. installs podman (rootful) and debootstrap from the machine's own apt sources;
# 2. makes the base images with debootstrap from the machine's Debian mirror, read from its apt sources now
#    (no image registry is needed, and no mirror is written into the repository): a runtime base (python3,
#    venv, CA certificates) and its build twin with g++;
# 3. builds deploy/docker/Dockerfile on them, in Docker's image format (the HEALTHCHECK survives), with the
#    host's pip configuration and CA bundle as build secrets and the local paths they name as read-only build
#    mounts (deploy/ci/pip_secret.py): nothing of them in a layer;
# 4. checks the image: health check kept, numeric non-root user, no compiler, no build secret left, and the
#    prebuilt fused kernel loads;
# 5. starts it with the example models as its repository, published on free loopback ports, waits for SERVING
#    within the HEALTHCHECK's start period, and checks it through the real client (deploy/ci/check_container.py:
#    list, predict, capture, diagnose, runs, health, metrics), that the server's captures use the fused
#    kernel, and that every process runs as uid 10001;
# 6. sends SIGTERM and checks the exit status and that it came within the grace period;
# 7. with --startup "N ...": times start-up to SERVING with N models (copies of the examples) for each N;
# 8. runs deploy/compose.yaml with podman-compose (deploy/ci/compose_ci.py says what differs: our images of
#    Debian's PostgreSQL and Prometheus packages, no Grafana, loopback ports): the server migrates PostgreSQL
#    and stores its runs there, Prometheus scrapes it and loads every rule; then `compose stop`; and once
#    more on an SQL_ASCII database.
#
# .ci/run runs it after the test suite when CI=true, with the suite's .venv (PYTHON= names another
# interpreter with layerscope.client). --fresh makes the base images again even when they exist;
# --image-only and --compose-only run one half. Logs: artifacts/container/ (LAYERSCOPE_CI_ARTIFACTS). Work
# folder: /var/tmp/layerscope-ci (LAYERSCOPE_CI_WORK).
set -euo pipefail
cd "$(dirname "$0")/../.."

FRESH=0
STARTUP=""
ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --fresh) FRESH=1 ;;
    --startup) STARTUP=$2; shift ;;
    --image-only | --compose-only) ONLY=${1#--} ;;
    *) echo "usage: bash deploy/ci/container.sh [--fresh] [--startup \"5 20\"] [--image-only | --compose-only]" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-.venv/bin/python}
WORK=${LAYERSCOPE_CI_WORK:-/var/tmp/layerscope-ci}
LOGS=${LAYERSCOPE_CI_ARTIFACTS:-artifacts/container}
IMAGE=localhost/layerscope:ci
NAME=layerscope-ci
# The stop grace period compose gives the server (stop_grace_period); the server's own LAYERSCOPE_GRACE_SECONDS
# (10 s by default) for in-flight calls sits inside it.
STOP_GRACE=30
# How long after SERVING every model found at start may take to load (health's `layerscope.models`; 20 small
# models had loaded 17 s after the start here), past which the check fails; the Kubernetes readiness probe
# waits for the same (deployment.yaml).
MODELS_BUDGET=120
EXAMPLES=(examples/models/*.keras)
STARTED=$SECONDS
TIMINGS=()

say() { printf '[container %4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() {
  say "FAILED: $*" >&2
  exit 1
}
timed() { # LABEL COMMAND...: runs it, records how long it took
  local label=$1 begun=$SECONDS
  shift
  "$@"
  TIMINGS+=("$(printf '%-34s %5d s' "$label" "$((SECONDS - begun))")")
}

remove_containers() {
  # One name at a time: given several, podman 4.3 removes none when one is missing. Removing a container with
  # a health check logs a systemd error here and may leave its storage behind, which --force also clears.
  local name
  for name in "$NAME" "$NAME-startup"; do podman rm --force --ignore --time 0 "$name" >/dev/null 2>&1 || true; done
}

cleanup() {
  remove_containers
  [ ! -f "$WORK/compose.yaml" ] || compose down --volumes >/dev/null 2>&1 || true
  rm -rf "$WORK/rootfs" "$WORK/pip.conf"
}
trap cleanup EXIT

preflight() {
  [ "$(id -u)" = 0 ] || fail "expected to run as root (rootful podman, debootstrap); received uid $(id -u)"
  [ -r /etc/debian_version ] || fail "expected a Debian machine (apt, debootstrap); /etc/debian_version is missing"
  [ -x "$PY" ] || fail "expected $PY with layerscope.client (run scripts/bootstrap.sh, or set PYTHON)"
  mkdir -p "$WORK" "$LOGS"
}

install_tools() {
  local missing=()
  # dnsname: containers on a compose network find each other by service name (CNI has no DNS of its own).
  for package in podman runc debootstrap containernetworking-plugins golang-github-containernetworking-plugin-dnsname \
    iptables; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >"$LOGS/apt.log" 2>&1 || fail "apt-get install ${missing[*]}: see $LOGS/apt.log"
  fi
}

# This machine's own podman configuration, in the work folder, never in /etc: CONTAINERS_CONF replaces the
# system's containers.conf for every podman call below.
configure_podman() {
  local runtime=crun nofile nproc
  # crun refuses hybrid cgroups ("cgroups in hybrid mode not supported"): v1 hierarchies beside a cgroup2 one
  # (/sys/fs/cgroup/unified), as here. runc runs on them.
  [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] || runtime=runc
  # Podman asks for nofile 1048576 and nproc 4194304 by default. Where root lacks CAP_SYS_RESOURCE (as in this
  # sandbox) a container's limits cannot exceed those the runtime inherits, so the defaults are refused
  # ("setrlimit RLIMIT_NOFILE: Operation not permitted"): nofile at the hard limit (65536 at most), and
  # 16384 processes (nproc above 20000 was refused here although `ulimit -Hu` said 96367); 20 model workers
  # use a few thousand threads.
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
  nproc=$(ulimit -Hu)
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ] && nproc=16384
  cat >"$WORK/containers.conf" <<EOF
# Written by deploy/ci/container.sh for this machine; see the comments there.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "$runtime"
EOF
  export CONTAINERS_CONF=$WORK/containers.conf
  say "$(podman --version): runtime $runtime ($($runtime --version | head -n1)), ulimits nofile=$nofile" \
    "nproc=$nproc ($CONTAINERS_CONF)"
}

probe_runtime() { # a container on the runtime base starts with that configuration, or says why not
  local why
  why=$(podman run --rm --network none "$BASE" true 2>&1) ||
    fail "expected a container to start with $CONTAINERS_CONF; podman said: $why"
}

# --- base images ---------------------------------------------------------------------------------------------

CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
BASE=localhost/layerscope-base:$CODENAME
BUILD_BASE=localhost/layerscope-base:$CODENAME-build
RUNTIME_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates

mirror() {
  # The repository this machine installs its own release from, whatever its sources files look like.
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(IDENTIFIER)' |
    awk -v release="$CODENAME" '$2 == release && $3 == "Packages" { print $1; exit }'
}

make_base() { # IMAGE PACKAGES
  local image=$1 packages=$2 url rootfs=$WORK/rootfs
  if [ "$FRESH" = 0 ] && podman image exists "$image"; then
    say "reusing $image (--fresh makes it again)"
    return
  fi
  url=$(mirror)
  [ -n "$url" ] || fail "expected an apt source for $CODENAME in \`apt-get indextargets\`; found none"
  say "debootstrap $CODENAME from $url: $packages"
  rm -rf "$rootfs"
  mkdir -p "$WORK/debs" # kept between the two bases (and runs): each package is downloaded once
  debootstrap --variant=minbase --cache-dir="$WORK/debs" --include="$packages" "$CODENAME" "$rootfs" "$url" \
    >"$LOGS/debootstrap-${image##*:}.log" 2>&1 || fail "debootstrap: see $LOGS/debootstrap-${image##*:}.log"
  # Package lists and downloads are not needed at run time; the host's name and resolver are not ours to ship.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs/etc/hostname" \
    "$rootfs/etc/resolv.conf"
  tar --numeric-owner -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  say "$image: $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec)"
}

make_bases() {
  [ -n "$CODENAME" ] || fail "expected VERSION_CODENAME in /etc/os-release; found none"
  make_base "$BASE" "$RUNTIME_PACKAGES"
  make_base "$BUILD_BASE" "$RUNTIME_PACKAGES,g++"
}

# --- the image -----------------------------------------------------------------------------------------------

build_image() {
  local line ca="" mounts=() status
  while read -r line; do
    case $line in
      "ca-bundle "*) ca=${line#ca-bundle } ;;
      "mount "*) mounts+=(--volume "${line#mount }:${line#mount }:ro") ;;
    esac
  done < <("$PY" deploy/ci/pip_secret.py "$WORK/pip.conf")
  say "pip: the host's settings ($(grep -c ' = ' "$WORK/pip.conf") of them) and CA bundle $ca as build secrets;" \
    "$((${#mounts[@]} / 2)) read-only build mounts"
  say "building $IMAGE (Docker format; the build log is $LOGS/build.log)"
  set +e
  podman build --format docker --network host --ignorefile deploy/docker/Dockerfile.dockerignore \
    --secret "id=pip.conf,src=$WORK/pip.conf" --secret "id=ca-bundle,src=$ca" "${mounts[@]}" \
    --build-arg "PYTHON_IMAGE=$BASE" --build-arg "BUILD_IMAGE=$BUILD_BASE" \
    -f deploy/docker/Dockerfile -t "$IMAGE" . 2>&1 | tee "$LOGS/build.log" |
    grep --line-buffered -E '^\[[0-9]+/[0-9]+\] STEP|^STEP|^built |prebuild' | cut -c1-150
  status=${PIPESTATUS[0]}
  set -e
  rm -f "$WORK/pip.conf"
  [ "$status" = 0 ] || fail "podman build exited $status: see $LOGS/build.log"
}

check_image() {
  local health user kernel
  health=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
  [ "$health" != null ] || fail "expected the image to keep its HEALTHCHECK; received none (built in OCI format?)"
  user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
  [ "${user%%:*}" = 10001 ] || fail "expected the image's user to be 10001; received '$user'"
  say "image: $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec), user $user, health check $health"
  podman run --rm --no-healthcheck "$IMAGE" sh -c '
    for tool in g++ c++ gcc cc; do if command -v "$tool"; then echo "a compiler: $tool"; exit 1; fi; done
    for left in /run/secrets/pip.conf /run/secrets/ca-bundle; do [ ! -e "$left" ] || { echo "left: $left"; exit 1; }; done
    if env | grep -E "^PIP_(CONFIG_FILE|CERT)="; then exit 1; fi
    for folder in /opt/layerscope /opt/layerscope/lib/python3*/site-packages/tensorflow; do du -sh "$folder"; done' |
    sed 's/^/  /' || fail "expected no compiler and no build secret in the image (above)"
  kernel=$(podman run --rm --no-healthcheck "$IMAGE" python -m layerscope.service.runtime.native check 2>&1) ||
    { echo "$kernel" >&2; fail "expected the prebuilt fused kernel to load in the image, with no compiler (above)"; }
  say "${kernel##*$'\n'}"
}

# --- a running container -------------------------------------------------------------------------------------

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

repository() { # FOLDER COUNT: COUNT models, the examples and then copies of them, each as <name>/1/model.keras
  local folder=$1 count=$2 i=0 source name
  rm -rf "$folder"
  while [ "$i" -lt "$count" ]; do
    source=${EXAMPLES[$((i % ${#EXAMPLES[@]}))]}
    name=$(basename "$source" .keras)
    [ "$i" -lt "${#EXAMPLES[@]}" ] || name="${name}_$((i / ${#EXAMPLES[@]} + 1))"
    install -D -m 0644 "$source" "$folder/$name/1/model.keras"
    i=$((i + 1))
  done
  chown -R 10001:10001 "$folder" # the server's user owns its repository volume, as an operator would set it
}

start() { # CONTAINER FOLDER: run the image on free loopback ports; sets GRPC and METRICS
  GRPC=$(free_port)
  METRICS=$(free_port)
  podman run --detach --name "$1" --stop-timeout "$STOP_GRACE" \
    --publish "127.0.0.1:$GRPC:50051" --publish "127.0.0.1:$METRICS:9464" --volume "$2:/models" \
    "$IMAGE" >/dev/null 2>>"$LOGS/podman.log" || fail "podman run $1: $(tail -n 1 "$LOGS/podman.log")"
  # No systemd here: podman cannot schedule the image's HEALTHCHECK ("unable to get systemd connection", in
  # podman.log), so the checks below run it themselves with `podman healthcheck run`.
}

start_period() { # the image's HEALTHCHECK start period, in seconds: the start-up budget
  echo $(($(podman image inspect --format '{{json .Config.Healthcheck.StartPeriod}}' "$IMAGE") / 1000000000))
}

healthy() { # CONTAINER SECONDS: run its health check until it passes (no systemd here schedules it); prints the
  # seconds it took, or fails with its log when it stopped or took longer
  local begun=$SECONDS
  until podman healthcheck run "$1" >/dev/null 2>&1; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$1")" != true ] || [ $((SECONDS - begun)) -ge "$2" ]; then
      podman logs "$1" >"$LOGS/$1.log" 2>&1
      fail "expected $1 healthy within $2 s; $(podman inspect --format '{{.State.Status}}' "$1") after" \
        "$((SECONDS - begun)) s (its log: $LOGS/$1.log)"
    fi
    sleep 1
  done
  echo $((SECONDS - begun))
}

wait_serving() { # CONTAINER: SERVING within the HEALTHCHECK's start period; prints the seconds it took
  healthy "$1" "$(start_period)"
}

stop() { # CONTAINER: SIGTERM, then the exit status and how long it took, within the grace period
  local begun=$SECONDS status
  podman kill --signal TERM "$1" >/dev/null
  status=$(timeout $((STOP_GRACE + 15)) podman wait "$1") || fail "$1 still running $((STOP_GRACE + 15)) s after SIGTERM"
  [ "$status" = 0 ] || fail "expected exit status 0 after SIGTERM; received $status"
  [ $((SECONDS - begun)) -le "$STOP_GRACE" ] ||
    fail "expected the exit within the ${STOP_GRACE} s grace period; it took $((SECONDS - begun)) s"
  say "SIGTERM: exit status $status after $((SECONDS - begun)) s (grace period ${STOP_GRACE} s)"
}

wait_models() { # TARGET: until health's `layerscope.models` says every model found at start loaded; seconds
  "$PY" - "$1" "$MODELS_BUDGET" <<'EOF'
import sys
import time

from layerscope.client import Client

target, budget = sys.argv[1], float(sys.argv[2])
began = time.monotonic()
with Client(target, timeout=10) as client:
    while (status := client.health("layerscope.models")) != "SERVING":
        if time.monotonic() - began > budget:
            sys.exit(f"expected every model loaded within {budget:.0f} s of SERVING; layerscope.models says {status}")
        time.sleep(0.5)
print(round(time.monotonic() - began))
EOF
}

check_running() {
  local seconds loaded models
  repository "$WORK/models" "${#EXAMPLES[@]}"
  models=$(cd "$WORK/models" && ls | paste -sd, -)
  start "$NAME" "$WORK/models"
  say "started $NAME: gRPC 127.0.0.1:$GRPC, metrics 127.0.0.1:$METRICS, models $models"
  seconds=$(wait_serving "$NAME")
  loaded=$(wait_models "127.0.0.1:$GRPC")
  say "SERVING after $seconds s (the image's own health check), its ${#EXAMPLES[@]} models loaded $loaded s later"
  "$PY" deploy/ci/check_container.py --target "127.0.0.1:$GRPC" --metrics-url "http://127.0.0.1:$METRICS/metrics" \
    --models "$models" || { podman logs "$NAME" >"$LOGS/server.log" 2>&1; fail "a client check failed (server log: $LOGS/server.log)"; }
  check_processes
  podman logs "$NAME" >"$LOGS/server.log" 2>&1
  grep -q 'capture statistics: fused kernel in use: /opt/layerscope/share/layerscope/ops/.* (prebuilt' "$LOGS/server.log" ||
    fail "expected the server to log the prebuilt fused kernel in use; see $LOGS/server.log"
  ! grep -q 'fused statistics kernel unavailable' "$LOGS/server.log" ||
    fail "a process fell back to TensorFlow ops: $(grep -m1 'fused statistics kernel unavailable' "$LOGS/server.log")"
  say "fused kernel: $(grep -o -m1 'fused kernel in use: [^ ]*' "$LOGS/server.log"); no process fell back"
  stop "$NAME"
  podman logs "$NAME" >"$LOGS/server.log" 2>&1
}

check_processes() {
  local users
  users=$(podman top "$NAME" huser | tail -n +2 | sort -u | paste -sd, -)
  [ "$users" = 10001 ] || fail "expected every process in the container to run as uid 10001; received $users"
  say "processes: $(podman top "$NAME" pid | tail -n +2 | wc -l), all as uid $users (non-root)"
}

measure_startup() { # COUNT
  local seconds loaded memory
  repository "$WORK/models-$1" "$1"
  start "$NAME-startup" "$WORK/models-$1"
  seconds=$(wait_serving "$NAME-startup")
  loaded=$(wait_models "127.0.0.1:$GRPC")
  memory=$(podman stats --no-stream --format '{{.MemUsage}}' "$NAME-startup" | cut -d/ -f1)
  say "start-up with $1 models: SERVING after $seconds s, every model loaded after $((seconds + loaded)) s," \
    "memory $memory"
  TIMINGS+=("$(printf '%-34s %5d s  (all loaded: %d s, %s)' "start-up, $1 models" "$seconds" \
    "$((seconds + loaded))" "$memory")")
  stop "$NAME-startup"
  podman rm "$NAME-startup" >/dev/null 2>>"$LOGS/podman.log"
}

# --- compose.yaml ---------------------------------------------------------------------------------------------

PROJECT=layerscope-ci
COMPOSE_VERSION=1.6.0
POSTGRES_IMAGE=localhost/layerscope-postgres:ci
PROMETHEUS_IMAGE=localhost/layerscope-prometheus:ci

compose() { "$WORK/compose-venv/bin/podman-compose" --project-name "$PROJECT" -f "$WORK/compose.yaml" "$@"; }

service_container() { # SERVICE: the container compose made for it
  podman ps --all --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

compose_images() {
  # Debian's packages in images of ours, on the runtime base: Docker Hub's postgres and prom/prometheus are out
  # of reach. apt inside the build reads the base's sources, the mirror debootstrap was given.
  local image folder
  for image in "$POSTGRES_IMAGE=postgres" "$PROMETHEUS_IMAGE=prometheus"; do
    folder=deploy/ci/images/${image#*=}
    podman build --format docker --network host --build-arg "BASE_IMAGE=$BASE" -t "${image%=*}" "$folder" \
      >"$LOGS/build-${image#*=}.log" 2>&1 || fail "building ${image%=*}: see $LOGS/build-${image#*=}.log"
    say "${image%=*}: $(podman image inspect --format '{{.Size}}' "${image%=*}" | numfmt --to=iec) ($folder)"
  done
  # podman-compose from PyPI: Debian's 1.0.3 ignores every depends_on condition and stop_grace_period.
  [ -x "$WORK/compose-venv/bin/podman-compose" ] || {
    python3 -m venv "$WORK/compose-venv" && "$WORK/compose-venv/bin/pip" install --quiet "podman-compose==$COMPOSE_VERSION"
  } >"$LOGS/compose-install.log" 2>&1 || fail "installing podman-compose: see $LOGS/compose-install.log"
}


compose_up() { # [SERVICE:VARIABLE=VALUE...]: compose.yaml as run here, started in its order; sets GRPC, METRICS,
  # PROMETHEUS (the published ports) and SERVER (the layerscope container)
  local line seconds
  GRPC="" METRICS="" PROMETHEUS=""
  while read -r line; do
    case $line in
      "layerscope 50051 "*) GRPC=${line##* } ;;
      "layerscope 9464 "*) METRICS=${line##* } ;;
      "prometheus 9090 "*) PROMETHEUS=${line##* } ;;
    esac
  done < <("$PY" deploy/ci/compose_ci.py "$WORK/compose.yaml" "layerscope=$IMAGE" "postgres=$POSTGRES_IMAGE" \
    "prometheus=$PROMETHEUS_IMAGE" "$@")
  [ -n "$GRPC" ] && [ -n "$METRICS" ] && [ -n "$PROMETHEUS" ] ||
    fail "expected deploy/ci/compose_ci.py to publish layerscope's and Prometheus's ports; it did not (above)"
  compose down --volumes >/dev/null 2>&1 || true
  # A network made before the dnsname plugin was installed has no DNS: made again, it has.
  podman network rm --force "${PROJECT}_default" >/dev/null 2>&1 || true
  # podman 4.3 has no "healthy" wait, so podman-compose skips depends_on's service_healthy (with a warning):
  # the order compose.yaml asks for is kept here, PostgreSQL healthy before the server starts.
  compose up -d postgres >>"$LOGS/compose.log" 2>&1 || fail "compose up postgres: see $LOGS/compose.log"
  seconds=$(healthy "$(service_container postgres)" 60)
  say "postgres healthy after $seconds s"
  compose up -d >>"$LOGS/compose.log" 2>&1 || fail "compose up: see $LOGS/compose.log"
  SERVER=$(service_container layerscope)
  seconds=$(wait_serving "$SERVER")
  say "layerscope SERVING after $seconds s on PostgreSQL: gRPC 127.0.0.1:$GRPC, Prometheus 127.0.0.1:$PROMETHEUS"
}

compose_checks() { # [CHECK_CONTAINER_ARGUMENTS...]: the client's checks, the runs in PostgreSQL, then compose stop
  local runs status begun
  "$PY" deploy/ci/check_container.py --target "127.0.0.1:$GRPC" --metrics-url "http://127.0.0.1:$METRICS/metrics" \
    --upload examples/models "$@" ||
    { podman logs "$SERVER" >"$LOGS/compose-server.log" 2>&1; fail "a compose check failed; see $LOGS/compose-server.log"; }
  runs=$(podman exec "$(service_container postgres)" psql -U layerscope -d layerscope -tAc 'SELECT count(*) FROM run')
  [ "$runs" -ge 2 ] || fail "expected the capture's and the diagnoses' runs in PostgreSQL; received $runs rows"
  say "PostgreSQL holds $runs runs (table run, migrated by the server at start)"
  begun=$SECONDS
  compose stop >>"$LOGS/compose.log" 2>&1 || fail "compose stop: see $LOGS/compose.log"
  status=$(podman inspect --format '{{.State.ExitCode}}' "$SERVER")
  podman logs "$SERVER" >"$LOGS/compose-server.log" 2>&1
  [ "$status" = 0 ] || fail "expected the server's exit status 0 after compose stop; received $status"
  say "compose stop: every service stopped after $((SECONDS - begun)) s, the server with exit status 0"
  compose down --volumes >>"$LOGS/compose.log" 2>&1
}

check_compose() {
  local encoding
  compose_images
  : >"$LOGS/compose.log"
  compose_up
  say "compose.yaml as run here ($WORK/compose.yaml): our images, no Grafana, ports on 127.0.0.1"
  compose_checks --prometheus "http://127.0.0.1:$PROMETHEUS"
  # Again on a database that is not UTF-8, which once made the server crash-loop: SQL_ASCII, initdb's
  # choice under the C locale, where PostgreSQL stores bytes unchecked.
  compose_up "postgres:POSTGRES_INITDB_ARGS=--encoding=SQL_ASCII --locale=C"
  encoding=$(podman exec "$(service_container postgres)" psql -U layerscope -d layerscope -tAc 'SHOW server_encoding')
  [ "$encoding" = SQL_ASCII ] || fail "expected the second pass's database in SQL_ASCII; received $encoding"
  say "the same on a $encoding database:"
  compose_checks
  grep -q "has encoding SQL_ASCII" "$LOGS/compose-server.log" ||
    fail "expected the server's start-up log to say the database is SQL_ASCII; see $LOGS/compose-server.log"
  say "the server's log: $(grep -o -m1 "the run database .* has encoding SQL_ASCII" "$LOGS/compose-server.log")"
}

main() {
  preflight
  say "layerscope container check: $(git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'), $(nproc) CPUs"
  timed "install podman, debootstrap" install_tools
  configure_podman
  remove_containers # a stale container of an interrupted run would hold the name
  timed "base images (debootstrap)" make_bases
  probe_runtime
  if [ "$ONLY" != compose-only ]; then
    timed "image build" build_image
    timed "image checks" check_image
    timed "container checks" check_running
    for count in $STARTUP; do timed "start-up measurement, $count models" measure_startup "$count"; done
  fi
  [ "$ONLY" = image-only ] || timed "compose: PostgreSQL, Prometheus" check_compose
  say "all checks passed; timings:"
  printf '  %s\n' "${TIMINGS[@]}"
}

main
