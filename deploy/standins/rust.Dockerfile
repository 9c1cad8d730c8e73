# Stand-in for the official rust:<version>-slim-bookworm image, which cannot be pulled here
# (scripts/check-containers builds it under that exact name). It mirrors the official image:
# the same apt packages (ca-certificates gcc libc6-dev wget, nothing more: no make, no
# cmake), the same RUSTUP_HOME / CARGO_HOME / PATH, and the host's toolchain of the same
# version copied in (without its docs). Differences: no `rustup` binary (cargo and rustc are
# linked directly), and a CA bundle for this machine's HTTPS interception, which cargo uses
# through CARGO_HTTP_CAINFO.
FROM debian:bookworm-slim
ARG RUST_VERSION
ARG TOOLCHAIN=${RUST_VERSION}-x86_64-unknown-linux-gnu
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev wget \
 && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rustup/toolchains/${TOOLCHAIN}
RUN mkdir -p /usr/local/cargo/bin \
 && for tool in cargo rustc rustdoc; do \
      ln -s "/usr/local/rustup/toolchains/${TOOLCHAIN}/bin/$tool" "/usr/local/cargo/bin/$tool"; \
    done \
 && chmod -R a+w /usr/local/cargo \
 && rustc --version && cargo --version
COPY ci-ca.crt /usr/local/share/ci-ca.crt
ENV CARGO_HTTP_CAINFO=/usr/local/share/ci-ca.crt
