# syntax=docker/dockerfile:1
# The lab's four service binaries (coordinator, participant, saga-orchestrator, saga-service) in
# one image, for docker-compose.yml (DESIGN §4, "deployed"). The load generator is not in it: it
# runs on the host and drives the containers through deploy/compose.toml.
#
# Build alone: docker build -t txlab-services:latest .   (docker compose up -d --build does it)

# --- build -----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# rdkafka-sys builds the bundled librdkafka from source with its own ./configure and make (no
# cmake), linking the system zlib (rdkafka's default `libz` feature; no TLS, SASL or zstd).
# The rust image has most of this already; listed so that the build does not depend on it.
# protoc needs nothing here: common/build.rs uses the protoc-bin-vendored crate.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace (see .dockerignore): cargo needs every member's manifest, and common's
# build script reads kafka/pom.xml.
COPY . .
# Caches survive between builds (BuildKit); the binaries are copied out of the cached target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p txlab-twopc -p txlab-saga --bins \
 && mkdir -p /out \
 && cp target/release/coordinator target/release/participant \
       target/release/saga-orchestrator target/release/saga-service /out/

# --- run -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# The binaries need glibc, libgcc_s and (the saga ones) libz.so.1: zlib1g is part of the base
# image; named anyway. No libssl: neither sqlx nor rdkafka is built with TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/ /usr/local/bin/
RUN useradd --system --no-create-home --uid 10001 txlab
USER txlab
ENV RUST_LOG=info
# Every process handles SIGTERM itself (a polite stop), so it can run as PID 1.
# docker-compose.yml names the binary and its flags for each service.
CMD ["coordinator", "--help"]
