#!/usr/bin/env bash
# The container engine and the stack, for scripts/check-containers (sourced from the
# repository root, not run; a benchmark of the same stack can reuse it).
#
# The caller defines `say` and `die`, then calls, in order: engine_init, engine_start,
# make_standins, build_image, stack_up; and engine_cleanup from its EXIT trap (it takes the
# stack down and stops dockerd, also after a failure).
#
# Environment: CHECK_CONTAINERS_ROOT (/var/tmp/gateway-containers): dockerd's data root,
# socket and state, and with them the cached images; an empty directory means a first run.

STATE="${CHECK_CONTAINERS_ROOT:-/var/tmp/gateway-containers}"
PROJECT=gatewaycheck
# Debian's client, not whatever `docker` comes first on the PATH: it matches the daemon and
# has the classic builder.
DOCKER=/usr/bin/docker
export DOCKER_HOST="unix://$STATE/docker.sock"
COMPOSE=(docker-compose --project-name "$PROJECT" --file docker-compose.yml
  --file deploy/standins/compose.override.yml)
DOCKERD_PID=""
STACK_UP=""
WORK=""

# Root, the packages, a work directory for logs, and the lock that keeps two runs on one
# data root apart.
engine_init() {
  [ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts dockerd)"
  local need=()
  [ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is missing"
  mkdir -p "$STATE"
  WORK=$(mktemp -d /var/tmp/gateway-containers-run.XXXXXX)
  exec 9>"$STATE/lock"
  flock -w 600 9 || die "another run holds $STATE/lock"
}

port_answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Starts dockerd in its own session (a timeout's signal to this script's process group must
# not reach it: the EXIT trap still needs it to take the stack down), and waits for it.
engine_start() {
  local port old others
  for port in 8888 9091; do
    ! port_answers 127.0.0.1 "$port" || die "port $port is in use (scripts/run?); the stack publishes it"
  done
  # A dockerd that a killed run left behind is ours to stop.
  if [ -s "$STATE/dockerd.pid" ]; then
    old=$(cat "$STATE/dockerd.pid")
    if grep -qF -- "$STATE/docker" "/proc/$old/cmdline" 2>/dev/null; then
      say "stopping the dockerd a previous run left (pid $old)"
      kill -TERM "$old"
      for _ in $(seq 300); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  others=$(pgrep -x dockerd || true)
  [ -z "$others" ] || die "another dockerd runs (pid $others); this script starts its own and would share its bridge"

  say "starting dockerd (data root $STATE/docker)"
  setsid /usr/sbin/dockerd --data-root "$STATE/docker" --exec-root "$STATE/exec" \
    --pidfile "$STATE/dockerd.pid" --host "$DOCKER_HOST" \
    >"$WORK/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  for _ in $(seq 600); do
    "$DOCKER" info >/dev/null 2>&1 && return
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 20 "$WORK/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.1
  done
  tail -n 20 "$WORK/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

# Takes the stack down (if up) and stops dockerd by its PID. For the caller's EXIT trap.
engine_cleanup() {
  if [ -n "$STACK_UP" ]; then
    "${COMPOSE[@]}" logs --no-color >"$WORK/stack.log" 2>&1 || true
    "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 10 >>"$WORK/down.log" 2>&1 || true
    STACK_UP=""
  fi
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
  fi
}

# ---- stand-ins for the public base images -----------------------------------------------

# A stand-in is rebuilt when its recipe (recorded in a label) changes.
recipe_of() { "$DOCKER" image inspect --format '{{index .Config.Labels "gateway.standin.recipe"}}' "$1" 2>/dev/null || true; }
short_sha() { sha256sum | cut -c1-16; }

apt_mirror() {
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
  echo "${uri:-http://deb.debian.org/debian}"
}

# The Dockerfile's base images, which the stand-ins must be named after.
base_images() {
  local from_lines
  from_lines=$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' Dockerfile)
  BUILDER_IMAGE=$(head -n 1 <<<"$from_lines")
  RUNTIME_IMAGE=$(tail -n 1 <<<"$from_lines")
  [ "$RUNTIME_IMAGE" = debian:bookworm-slim ] \
    || die "the Dockerfile's runtime base is $RUNTIME_IMAGE; the stand-ins cover debian:bookworm-slim only"
  [[ "$BUILDER_IMAGE" =~ ^rust:([0-9]+\.[0-9]+(\.[0-9]+)?)-slim-bookworm$ ]] \
    || die "the Dockerfile's builder is $BUILDER_IMAGE; the stand-ins cover rust:<version>-slim-bookworm only"
  RUST_WANTED=${BASH_REMATCH[1]}
}

make_debian_base() {
  local mirror rootfs recipe
  mirror=$(apt_mirror)
  recipe=$(printf 'minbase bookworm slim v1 %s' "$mirror" | short_sha)
  [ "$(recipe_of "$RUNTIME_IMAGE")" = "$recipe" ] && return
  say "debootstrapping Debian bookworm (minbase) from $mirror as $RUNTIME_IMAGE"
  rootfs="$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -f "$rootfs/etc/apt/sources.list"
  # What makes the official image "slim": no docs, man pages or translations, now or from
  # later installs, and no package cache.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  echo 'APT::Keep-Downloaded-Packages "false";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,locale,lintian}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -c . \
    | "$DOCKER" import --change 'CMD ["bash"]' --change "LABEL gateway.standin.recipe=$recipe" \
        - "$RUNTIME_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

host_toolchain() {
  local dir rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
  for dir in "$rustup_home"/toolchains/*-x86_64-unknown-linux-gnu; do
    [ -x "$dir/bin/rustc" ] || continue
    if "$dir/bin/rustc" --version | grep -q "^rustc ${RUST_WANTED//./\\.}[. ]"; then
      realpath "$dir"
      return
    fi
  done
  die "no Rust $RUST_WANTED toolchain in $rustup_home/toolchains (rustup toolchain install $RUST_WANTED) for the $BUILDER_IMAGE stand-in"
}

make_rust_builder() {
  local toolchain version recipe context
  toolchain=$(host_toolchain)
  version=$("$toolchain/bin/rustc" --version | awk '{ print $2 }')
  recipe=$( { cat deploy/standins/rust.Dockerfile /etc/ssl/certs/ca-certificates.crt
              echo "$version $(recipe_of "$RUNTIME_IMAGE")"; } | short_sha)
  [ "$(recipe_of "$BUILDER_IMAGE")" = "$recipe" ] && return
  say "building $BUILDER_IMAGE from $RUNTIME_IMAGE and the host's Rust $version"
  context="$WORK/rust-context"
  mkdir -p "$context"
  cp deploy/standins/rust.Dockerfile "$context/Dockerfile"
  cp /etc/ssl/certs/ca-certificates.crt "$context/ci-ca.crt"
  # Hard links where the file system allows (no 600 MB copy), without the docs.
  cp -al "$toolchain" "$context/toolchain" 2>/dev/null || cp -a "$toolchain" "$context/toolchain"
  rm -rf "$context/toolchain/share/doc"
  "$DOCKER" build --quiet --force-rm --build-arg "RUST_VERSION=$version" \
    --label "gateway.standin.recipe=$recipe" -t "$BUILDER_IMAGE" "$context" >/dev/null
  rm -rf "$context"
}

make_service_standin() { # name dockerfile: cheap when nothing changed (every step cached)
  "$DOCKER" build --quiet --force-rm -t "$1" -f "deploy/standins/$2" deploy/standins >/dev/null
}

make_standins() {
  base_images
  make_debian_base
  make_rust_builder
  make_service_standin gateway-standin/postgres:15 postgres.Dockerfile
  make_service_standin gateway-standin/redis:7.0 redis.Dockerfile
}

# ---- the image and the stack ------------------------------------------------------------

build_image() {
  # The build stage is tagged too, so that its layers (the compiled dependencies) count as
  # used and survive the pruning of superseded images.
  "$DOCKER" build --force-rm --target build -t gatewaycheck/build-stage:cache . >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; die "docker build (build stage) failed"; }
  "$DOCKER" build --force-rm -t travel-gateway:local . >>"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; die "docker build failed"; }
  "$DOCKER" image prune --force >/dev/null
}

# Every container, network and volume the daemon has, one per line.
engine_inventory() {
  {
    "$DOCKER" ps --all --quiet --no-trunc | sed 's/^/container /'
    "$DOCKER" network ls --quiet --no-trunc | sed 's/^/network /'
    "$DOCKER" volume ls --quiet | sed 's/^/volume /'
  } | sort
}

# Starts docker-compose.yml (JWT_SECRET must be exported) and waits until every container
# is healthy. Records the inventory from before in $WORK/before.
stack_up() {
  local deadline unhealthy id state count
  "${COMPOSE[@]}" config --quiet
  # Whatever a killed run left behind.
  "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  engine_inventory >"$WORK/before"
  STACK_UP=1
  "${COMPOSE[@]}" up --detach --no-build >"$WORK/up.log" 2>&1 \
    || { cat "$WORK/up.log" >&2; "${COMPOSE[@]}" ps >&2 || true; die "docker-compose up failed"; }
  deadline=$((SECONDS + 180))
  while :; do
    unhealthy=""
    for id in $("${COMPOSE[@]}" ps --quiet); do
      state=$("$DOCKER" inspect --format '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$id")
      [ "${state##* }" = healthy ] || unhealthy+="${state#/} "
    done
    [ -z "$unhealthy" ] && break
    [ $SECONDS -lt $deadline ] || { "${COMPOSE[@]}" ps >&2; die "not healthy after 180 s: $unhealthy"; }
    sleep 1
  done
  count=$("${COMPOSE[@]}" ps --quiet | wc -l)
  [ "$count" -eq 7 ] || die "expected 7 containers, found $count"
}

# `down -v`, then proves that nothing the stack made is left: the daemon's inventory equals
# the one from before `up`, and nothing carries the project's label.
stack_down() {
  local left kind found
  "${COMPOSE[@]}" logs --no-color >"$WORK/stack.log" 2>&1 || true
  "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 10 >"$WORK/down.log" 2>&1
  STACK_UP=""
  left=$(comm -13 "$WORK/before" <(engine_inventory))
  [ -z "$left" ] || die "left after down -v: $left"
  for kind in container network volume; do
    case $kind in
      container) found=$("$DOCKER" ps --all --quiet --filter "label=com.docker.compose.project=$PROJECT") ;;
      network) found=$("$DOCKER" network ls --quiet --filter "label=com.docker.compose.project=$PROJECT") ;;
      volume) found=$("$DOCKER" volume ls --quiet --filter "label=com.docker.compose.project=$PROJECT") ;;
    esac
    [ -z "$found" ] || die "a $kind of project $PROJECT is left after down -v: $found"
  done
}
