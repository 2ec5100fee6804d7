# syntax=docker/dockerfile:1
# The idsync image: one binary (`idsync serve`, `idsync operator`, ...), run as
# a non-root user on a read-only root filesystem (what charts/idsync expects).
#
#   docker build -t idsync:0.1.0 .
#
# scripts/build-image.sh builds the same final layout without a daemon or a
# base image (buildah, from scratch) and runs `idsync --version` in it.

# --- build -----------------------------------------------------------------
FROM rust:1.94-bookworm AS build
# samael binds xmlsec through bindgen: headers, pkg-config and libclang.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libxmlsec1-dev libxml2-dev libssl-dev pkg-config libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin idsync \
 && cp target/release/idsync /idsync \
 && objcopy --strip-debug /idsync

# --- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim
# The shared libraries the binary links (ldd): xmlsec1 with its OpenSSL
# backend, libxml2, OpenSSL; CA certificates for IdP discovery over HTTPS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libxmlsec1 libxmlsec1-openssl libxml2 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/idsync \
 && chown 65532:65532 /var/lib/idsync
COPY --from=build /idsync /usr/local/bin/idsync
# The identity service's SQLite file lives here (a volume in the chart).
WORKDIR /var/lib/idsync
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/idsync"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
