# syntax=docker/dockerfile:1
#
# A statically linked release binary in an empty image, run as nobody.
# tests/static_binary.rs builds the binary with exactly the RUSTFLAGS and
# cargo command line below (it checks this file) and runs it alone in an
# empty root directory, as this image does.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Static glibc rather than musl: the test machine has no musl target, and
# the test and the image must build the same binary. Static glibc is safe
# here because the program does no DNS or NSS look-ups (no getaddrinfo,
# getpwnam...): it only binds 0.0.0.0 and connects to 127.0.0.1 by address.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu

FROM scratch
COPY --from=builder /src/target/x86_64-unknown-linux-gnu/release/metrics-multiplexer-sidecar /metrics-multiplexer-sidecar
# nobody:nogroup; the export port is above 1024, so no capability is needed.
USER 65534:65534
EXPOSE 13434
# The binary is PID 1: it handles SIGTERM and SIGINT itself and exits 0.
ENTRYPOINT ["/metrics-multiplexer-sidecar"]
