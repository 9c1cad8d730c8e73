# One image with both binaries: `gateway` (the root crate) and `travel` (the `stack` crate,
# which runs the services of the `travel` crate).
# Build:  docker build -t travel-gateway .
# Run:    see docker-compose.yml (one container per service, all from this image) and
#         deploy/kubernetes/. scripts/check-containers builds and runs it in CI.

# ---- build ----------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
# cmake and make: Pingora's zlib-ng build (the rust image brings gcc, not make).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that editing the sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY travel/Cargo.toml travel/Cargo.toml
COPY stack/Cargo.toml stack/Cargo.toml
# The benchmark's bare Pingora proxy is a workspace member the image never builds: its
# manifest and a placeholder only, so that the workspace loads.
COPY benches/floor/Cargo.toml benches/floor/Cargo.toml
RUN mkdir -p src travel/src stack/src benches/floor/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && touch travel/src/lib.rs \
 && echo 'fn main() {}' > stack/src/main.rs && touch stack/src/lib.rs \
 && echo 'fn main() {}' > benches/floor/src/main.rs \
 && cargo build --release --locked -p gateway -p stack \
 && rm -rf src travel/src stack/src
# The admin port serves the API contract, compiled in (include_str!).
COPY docs/openapi.yaml docs/openapi.yaml
COPY src src
COPY travel travel
COPY stack stack
# Touch the real sources so cargo rebuilds them over the placeholders.
RUN touch src/main.rs src/lib.rs travel/src/lib.rs stack/src/main.rs stack/src/lib.rs \
 && cargo build --release --locked -p gateway -p stack \
 && install -m 0755 target/release/gateway target/release/travel /usr/local/bin/

# ---- runtime --------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /var/lib/travel --create-home app
COPY --from=build /usr/local/bin/gateway /usr/local/bin/travel /usr/local/bin/
# A default config only: deployments mount theirs over /etc/gateway (docker-compose.yml,
# the Kubernetes ConfigMap). Secrets come from the environment (JWT_SECRET, REDIS_URL).
COPY gateway.yaml /etc/gateway/gateway.yaml
COPY data/seed /usr/share/travel/seed
USER 10001:10001
WORKDIR /var/lib/travel
# The gateway; the travel services use 8081-8084 (see docker-compose.yml).
EXPOSE 8888 9091
# The gateway's admin /healthz (503 while draining after SIGTERM). A container running a
# travel service instead sets its own (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:9091/healthz"]
CMD ["gateway", "--config", "/etc/gateway/gateway.yaml"]
