# ringcast container image, built from source: `docker build -t ringcast .`
#
# Without arguments the container is a standalone origin on the embedded default config:
#   docker run -p 1935:1935 ringcast
# Any other role comes from RINGCAST_* variables (README: "Run with Docker", "Run with compose",
# "Run on Kubernetes"); arguments go to the binary (`docker run ringcast --check-config`).
#
# Stages: `builder` compiles the release binary with the Rust toolchain; `certs` supplies the CA
# bundle; the runtime stage is Debian slim with the binary, the CA bundle and a non-root user.
# The binary links only glibc (libc, libm, libgcc_s; TLS is rustls), which Debian slim has.
#
# conf/docker/Dockerfile.runtime is the same runtime stage around a binary built outside the
# image (CI, machines without a Rust image); tests/deploy_manifests.rs checks the two runtime
# stages stay identical.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Only what the build reads (benches: Cargo.toml declares them; conf/default.toml is compiled in).
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY conf conf
COPY src src
# The release profile keeps line tables for profiling (95 MB); the image keeps the symbols only
# (14 MB; backtraces still name functions). objcopy comes with the image's gcc (binutils).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ringcast \
 && mkdir -p /out \
 && objcopy --strip-debug target/release/ringcast /out/ringcast

# The CA bundle, for https:// hook and JWKS URLs (rustls reads the system's roots). Copied
# alone, so the runtime stage gets no openssl or apt leftovers.
FROM ${RUNTIME_IMAGE} AS certs
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# ---- runtime stage (the same in Dockerfile and conf/docker/Dockerfile.runtime but for the COPY of the binary)
FROM ${RUNTIME_IMAGE}
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN groupadd --system --gid 10001 ringcast \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ringcast
COPY --from=builder /out/ringcast /usr/local/bin/ringcast
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# RTMP, HTTP (API, /healthz, /readyz, /metrics; on 127.0.0.1 unless RINGCAST_HTTP__LISTEN says
# otherwise), gossip (UDP; opens only with RINGCAST_CLUSTER__SECRET).
EXPOSE 1935/tcp 8080/tcp 7946/udp
# The first SIGTERM drains (serves what the node holds for up to node.drain_timeout_s, 3600 s),
# a second one stops: give `docker stop -t` / stop_grace_period a little more than the drain.
STOPSIGNAL SIGTERM
# `ringcast healthcheck` asks GET /healthz on http.listen (read from the same environment).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["ringcast", "healthcheck"]
ENTRYPOINT ["ringcast"]
