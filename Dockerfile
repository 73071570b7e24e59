# AuditTrail: one binary serving the API, the WebSockets and the dashboard.
#
#   docker compose up -d --build          (see docker-compose.yml and the README)
#
# Multi-stage: compile in a Rust image, run in a small Debian image as the unprivileged user
# `audittrail` (uid 10001). The base images are build arguments so offline or mirrored builds
# can substitute their own (the test suite does); CARGO_NET_OFFLINE=true builds from a builder
# image that already holds the crates.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
ARG CARGO_NET_OFFLINE=false
ENV CARGO_NET_OFFLINE=${CARGO_NET_OFFLINE}
WORKDIR /src
# A binary already built from this tree on a Debian 12 host may be put in deploy/prebuilt/
# (the test suite does, to build the image in seconds); normally that folder is empty and the
# image compiles from source.
COPY deploy/prebuilt/ /prebuilt/
# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
# A patched sqlx-core (see vendor/README.md).
COPY vendor vendor
RUN [ -x /prebuilt/audittrail ] || { mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in rules redact auth; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked --bin audittrail \
 && rm -rf src benches target/release/.fingerprint/audittrail-*; }
COPY build.rs ./
COPY src src
COPY benches benches
COPY migrations migrations
COPY web web
COPY askama.toml ./
COPY rules rules
RUN if [ -x /prebuilt/audittrail ]; then \
      mkdir -p target/release && cp /prebuilt/audittrail target/release/audittrail; \
    else \
      cargo build --release --locked --bin audittrail; \
    fi \
 && strip target/release/audittrail \
 && ./target/release/audittrail --version

FROM ${RUNTIME_IMAGE}
# CA certificates for alert webhooks over HTTPS, and pg_dump/pg_restore for `audittrail backup`
# and `restore` on Postgres (WITH_PG_TOOLS=false leaves them out).
ARG WITH_PG_TOOLS=true
RUN pkgs=""; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || pkgs="ca-certificates"; \
    [ "$WITH_PG_TOOLS" = true ] && pkgs="$pkgs postgresql-client"; \
    if [ -n "$pkgs" ]; then \
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 audittrail \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin audittrail \
 && mkdir -p /app/data /app/rules \
 && chown 10001:10001 /app/data
COPY --from=build /src/target/release/audittrail /usr/local/bin/audittrail
# The default rules; docker-compose.yml mounts ./rules over them, read-only.
COPY rules /app/rules
WORKDIR /app
USER 10001:10001
# Inside a container 127.0.0.1 is unreachable from nginx: listen on every interface.
ENV AUDITTRAIL_BIND=0.0.0.0:8000 \
    AUDITTRAIL_DATA_DIR=/app/data \
    AUDITTRAIL_RULES_DIR=/app/rules
VOLUME ["/app/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["audittrail", "healthcheck"]
ENTRYPOINT ["audittrail"]
CMD ["serve"]
