# syntax=docker/dockerfile:1
#
# A statically linked, stripped release binary in an empty image, run as
# nobody, for the platform asked:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t metrics-multiplexer-sidecar .
#
# The builder runs on the build machine's own platform and cross-compiles to
# BuildKit's TARGETARCH (no emulation). Rust's musl targets carry their own C
# library and start files, and the program links no C code, so the linker
# that ships with Rust (rust-lld) links any of them: no cross C toolchain.
# tests/static_binary.rs builds the binary for the host with exactly these
# settings (it checks this file) and runs it alone in an empty root
# directory, as this image does.

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS builder
ARG TARGETARCH
WORKDIR /src
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
RUN case "$TARGETARCH" in \
        amd64) target=x86_64-unknown-linux-musl ;; \
        arm64) target=aarch64-unknown-linux-musl ;; \
        *) echo "no Rust musl target for TARGETARCH=$TARGETARCH (amd64 and arm64 are known)" >&2; exit 1 ;; \
    esac \
    && rustup target add "$target" \
    && cargo build --release --locked --target "$target" \
    && cp "target/$target/release/metrics-multiplexer-sidecar" /metrics-multiplexer-sidecar

FROM scratch
COPY --from=builder /metrics-multiplexer-sidecar /metrics-multiplexer-sidecar
# nobody:nogroup; the export port is above 1024, so no capability is needed.
USER 65534:65534
EXPOSE 13434
# The binary is PID 1: it handles SIGTERM and SIGINT itself and exits 0.
ENTRYPOINT ["/metrics-multiplexer-sidecar"]
