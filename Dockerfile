# Isthmus images. Three targets:
#   docker build --target proxy -t isthmus/proxy .   # the `isthmus` proxy (sidecar and edge)
#   docker build --target init  -t isthmus/init  .   # `iptables-init`, the sidecar's init container
#   docker build --target istio-proxy -t isthmus/istio-proxy .   # Istio's proxyv2 (pilot-agent)
#       with `isthmus` beside it, for deploy/istio-injection.yaml (binaryPath)
# (`proxy` is the last stage, so it is also what a plain `docker build .` produces.)

# --- dependencies: build every external crate once, cached until a manifest changes ----------
FROM rust:1.95-bookworm AS deps
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proxy/Cargo.toml proxy/
COPY xds-client/Cargo.toml xds-client/build.rs xds-client/
COPY xds-client/proto xds-client/proto
COPY iptables-init/Cargo.toml iptables-init/
COPY benches/Cargo.toml benches/
COPY tests/Cargo.toml tests/
# Stub sources: every workspace member needs its targets to exist for Cargo to load the
# workspace (including benches' [[bench]] files). xds-client's real build.rs and protos are
# already here, so the Envoy descriptor set is built in this cached layer too.
RUN mkdir -p proxy/src xds-client/src iptables-init/src benches/src benches/benches tests/src \
    && echo 'fn main() {}' > proxy/src/main.rs \
    && echo 'fn main() {}' > iptables-init/src/main.rs \
    && echo 'fn main() {}' > benches/benches/xds_decode.rs \
    && touch proxy/src/lib.rs xds-client/src/lib.rs iptables-init/src/lib.rs benches/src/lib.rs tests/src/lib.rs \
    && cargo build --release --locked -p proxy -p iptables-init

# --- build: the real sources over the stubs ------------------------------------------------
FROM deps AS build
COPY proxy/src proxy/src
COPY xds-client/src xds-client/src
COPY iptables-init/src iptables-init/src
# COPY keeps the files' own modification times, which can be older than the stub build;
# touching the crate roots makes Cargo rebuild the workspace crates instead of reusing stubs.
RUN touch proxy/src/main.rs proxy/src/lib.rs xds-client/src/lib.rs iptables-init/src/main.rs iptables-init/src/lib.rs \
    && cargo build --release --locked -p proxy -p iptables-init

# --- init: iptables-init, run as root with NET_ADMIN/NET_RAW by the injector ---------------------
FROM debian:12-slim AS init
# iptables (nft and legacy back ends) and iproute2 (`ip rule`/`ip route` for TPROXY, `ip addr`
# for IPv6), pinned to bookworm's versions.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables=1.8.9-2 iproute2=6.1.0-3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/iptables-init /usr/local/bin/iptables-init
ENTRYPOINT ["/usr/local/bin/iptables-init"]

# --- istio-proxy: Istio's own sidecar image (pilot-agent: certificates over SDS, xDS to istiod
# over mTLS on 15012, readiness) starting isthmus instead of envoy via ProxyConfig.binaryPath ----
FROM docker.io/istio/proxyv2:1.28.0 AS istio-proxy
COPY --from=build /src/target/release/isthmus /usr/local/bin/isthmus
USER 1337:1337

# --- proxy: isthmus on distroless (glibc + libgcc, no shell), as the mesh's uid/gid 1337 ---------
FROM gcr.io/distroless/cc-debian12:nonroot AS proxy
COPY --from=build /src/target/release/isthmus /usr/local/bin/isthmus
USER 1337:1337
# 15000 admin (bound to 127.0.0.1 by the bootstraps), 15001/15006 outbound/inbound capture,
# 15021 readiness (/healthz/ready), 15090 Prometheus; 8080/8443 edge gateway.
EXPOSE 15000 15001 15006 15021 15090 8080 8443
ENTRYPOINT ["/usr/local/bin/isthmus"]
