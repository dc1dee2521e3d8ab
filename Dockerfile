# syntax=docker/dockerfile:1
# One image per binary: --build-arg BINARY=herald-gateway (default) or herald-consumer.
# Stages: cargo-chef plans the dependency graph, cooks (builds) dependencies in a
# cached layer, then builds Herald; the runtime is distroless (glibc + CA certs,
# no shell) running as a fixed non-root uid. Every HTTP client uses rustls, so no
# OpenSSL is needed at runtime.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
ARG BINARY=herald-gateway
RUN cargo build --release --locked --bin "${BINARY}" \
    && cp "target/release/${BINARY}" /app/herald

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /app/herald /usr/local/bin/herald
USER 65532:65532
# The embedded queue needs a writable directory; mount a volume here to keep it.
ENV HOST=0.0.0.0 PORT=3000 HERALD_DATA_DIR=/home/nonroot/data
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/herald"]
