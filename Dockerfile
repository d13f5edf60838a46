# syntax=docker/dockerfile:1
#
# EventDBX: a small runtime image that serves /var/lib/eventdbx in the foreground.
#
#   docker build -t eventdbx .
#   docker run -d --name eventdbx -p 6363:6363 -v eventdbx:/var/lib/eventdbx eventdbx
#   docker exec eventdbx dbx token bootstrap --stdout
#
# On first start against an empty volume, EVENTDBX_AUTO_INIT=1 makes `dbx serve start`
# create /var/lib/eventdbx/.dbx (config, keys, a bootstrap token in .dbx/cli.token),
# listening on EVENTDBX_BIND_ADDR (0.0.0.0 in the image) and EVENTDBX_PORT (6363).
# Extra arguments are passed to `dbx serve start --foreground`, e.g. `--restrict strict`.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# --- build ------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# RocksDB's bindgen needs libclang; its C++ needs a compiler (g++ comes with the image).
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dbx \
    && install -D -m 0755 target/release/dbx /out/dbx \
    && strip /out/dbx

# --- runtime ----------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 eventdbx \
    && useradd --system --uid 10001 --gid eventdbx --home-dir /var/lib/eventdbx --shell /usr/sbin/nologin eventdbx \
    && install -d -o eventdbx -g eventdbx -m 0700 /var/lib/eventdbx
COPY --from=build /out/dbx /usr/local/bin/dbx

ENV EVENTDBX_AUTO_INIT=1 \
    MIMALLOC_PURGE_DELAY=10 \
    MIMALLOC_ALLOW_THP=0 \
    EVENTDBX_BIND_ADDR=0.0.0.0 \
    EVENTDBX_PORT=6363
USER eventdbx
WORKDIR /var/lib/eventdbx
VOLUME ["/var/lib/eventdbx"]
EXPOSE 6363
# `dbx` handles SIGTERM itself: `docker stop` lets in-flight writes finish.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["dbx", "serve", "status"]
ENTRYPOINT ["dbx", "serve", "start", "--foreground"]
