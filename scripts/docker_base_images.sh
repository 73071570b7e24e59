#!/usr/bin/env bash
# Prepares a local Docker engine and two offline base images, with no image registry:
#   audittrail-local/debian:bookworm-slim  debootstrap (minbase + ca-certificates), docker import
#   audittrail-local/nginx:bookworm        the runtime image + Debian's nginx (for the compose test)
#   audittrail-local/rust:bookworm         the above + build-essential/pkg-config + the host's
#                                          Rust stable toolchain + the host's cargo registry cache,
#                                          so `cargo build --offline --locked` works in a container
# Installs docker.io/docker-compose/debootstrap from Debian and starts dockerd when needed.
# Idempotent: a second run skips whatever already exists. Run as root: scripts/docker_base_images.sh
#   MIRROR=http://deb.debian.org/debian   the Debian mirror for debootstrap
set -euo pipefail

log() { printf '\n== %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
started=$(date +%s)

RUNTIME_IMAGE=audittrail-local/debian:bookworm-slim
RUST_IMAGE=audittrail-local/rust:bookworm
NGINX_IMAGE=audittrail-local/nginx:bookworm
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
TOOLCHAIN="${TOOLCHAIN:-$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu}"
REGISTRY="${CARGO_REGISTRY:-${CARGO_HOME:-$HOME/.cargo}/registry}"
DOCKERD_LOG=/var/log/dockerd-audittrail.log
[ "$(id -u)" = 0 ] || die "run as root (installs packages and starts dockerd)"

# 1. Debian packages, only when missing (apt-get update only if something must be installed).
missing=()
for pkg in docker.io docker-compose debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian)"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi

# Client: Debian's /usr/bin/docker matches the 20.10 daemon (API 1.41). The v28 client on PATH
# also works (it negotiates down to 1.41) but, without buildx, warns that its builder is deprecated.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker) || die "no docker client found"
export DOCKER_BUILDKIT=0

# 2. The engine: start dockerd in the background unless one already answers.
if ! "$DOCKER" info >/dev/null 2>&1; then
    log "starting dockerd (log: $DOCKERD_LOG)"
    command -v dockerd >/dev/null || die "dockerd missing (package docker.io)"
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
    "$DOCKER" info >/dev/null 2>&1 \
        || { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd did not answer within 60 s (see $DOCKERD_LOG)"; }
fi
log "docker client $DOCKER ($("$DOCKER" version -f '{{.Client.Version}}')), daemon $("$DOCKER" version -f '{{.Server.Version}} API {{.Server.APIVersion}}'), storage $("$DOCKER" info -f '{{.Driver}}')"

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
tmp=$(mktemp -d /var/tmp/audittrail-images.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# 3. Runtime base image: a minimal Debian root filesystem, imported as an image.
if have_image "$RUNTIME_IMAGE"; then
    log "$RUNTIME_IMAGE exists, skipping"
else
    log "debootstrap bookworm from $MIRROR (about a minute)"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$tmp/rootfs" "$MIRROR" \
        >"$tmp/debootstrap.log" 2>&1 || { tail -n 20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
    log "importing $RUNTIME_IMAGE"
    tar -C "$tmp/rootfs" -c . | "$DOCKER" import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$RUNTIME_IMAGE" >/dev/null
    rm -rf "$tmp/rootfs"
fi

# 4. Rust build image: the runtime image + C toolchain + the host's Rust toolchain and crates.
if have_image "$RUST_IMAGE"; then
    log "$RUST_IMAGE exists, skipping"
else
    [ -x "$TOOLCHAIN/bin/cargo" ] || die "no Rust toolchain at $TOOLCHAIN"
    [ -d "$REGISTRY/cache" ] || die "no cargo registry cache at $REGISTRY"
    log "assembling build context (toolchain without docs, registry index + .crate cache)"
    ctx="$tmp/ctx"; mkdir -p "$ctx/rust" "$ctx/registry"
    # Hard links when on the same filesystem (instant), plain copies otherwise.
    copy() { cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; }
    for d in bin lib libexec etc share; do [ -e "$TOOLCHAIN/$d" ] && copy "$TOOLCHAIN/$d" "$ctx/rust/"; done
    rm -rf "$ctx/rust/share/doc"   # ~800 MB of HTML docs
    # src/ is left out: cargo unpacks crates from cache/ on demand.
    for d in index cache; do copy "$REGISTRY/$d" "$ctx/registry/"; done
    cat >"$ctx/Dockerfile" <<EOF
FROM $RUNTIME_IMAGE
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential gcc pkg-config >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rust /usr/local/rust
COPY registry /usr/local/cargo/registry
CMD ["/bin/bash"]
EOF
    log "docker build $RUST_IMAGE (context $(du -sh "$ctx" | cut -f1))"
    "$DOCKER" build --network host -q -t "$RUST_IMAGE" "$ctx" >/dev/null || die "docker build $RUST_IMAGE failed"
fi
"$DOCKER" run --rm "$RUST_IMAGE" sh -c 'cargo --version && rustc --version' \
    || die "$RUST_IMAGE cannot run cargo"

# 5. nginx from Debian's package, on the runtime image (the public nginx image cannot be pulled).
if have_image "$NGINX_IMAGE"; then
    log "$NGINX_IMAGE exists, skipping"
else
    mkdir -p "$tmp/nginx"
    printf '%s\n' "FROM $RUNTIME_IMAGE" \
        'RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null && rm -rf /var/lib/apt/lists/*' \
        'STOPSIGNAL SIGQUIT' \
        'CMD ["nginx", "-g", "daemon off;"]' >"$tmp/nginx/Dockerfile"
    log "docker build $NGINX_IMAGE"
    "$DOCKER" build --network host -q -t "$NGINX_IMAGE" "$tmp/nginx" >/dev/null || die "docker build $NGINX_IMAGE failed"
fi

# 6. Summary.
log "images (built/checked in $(( $(date +%s) - started )) s)"
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^audittrail-local/'
echo "RUNTIME_IMAGE=$RUNTIME_IMAGE"
echo "RUST_IMAGE=$RUST_IMAGE"
echo "NGINX_IMAGE=$NGINX_IMAGE"
