# infergraph: a multi-stage build into a slim runtime image.
#
#   docker build -t infergraph .                        # CPU hosts (backend "auto" picks the CPU)
#   docker build -t infergraph:gpu --build-arg GPU=1 .  # NVIDIA hosts: Vulkan loader + NVIDIA ICD
#   docker run -p 3000:3000 --stop-timeout 45 -e INFERGRAPH_API_KEYS="$(openssl rand -hex 32)" infergraph
#   docker run --gpus all -p 3000:3000 --stop-timeout 45 -e INFERGRAPH_API_KEYS=... infergraph:gpu
#   docker run -p 3000:3000 -v /models:/models -v "$PWD/my-config.toml:/app/config.toml" infergraph
#
# The server listens on 0.0.0.0 here, so it needs API keys (INFERGRAPH_API_KEYS, or a key file
# named in a mounted config's [auth] keys_file) and refuses to start without them, saying so,
# unless told INFERGRAPH_AUTH=none on purpose. --stop-timeout: `docker stop` waits 10 s by
# default, less than the 30 s a SIGTERM gives in-flight requests ([server] shutdown_grace_secs).
#
# Not built here (no docker engine on the project's machines); it is kept simple on purpose.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY assets ./assets
COPY model-weights ./model-weights
RUN cargo build --release --locked --bin infergraph

FROM debian:bookworm-slim
ARG GPU=0
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libvulkan1 \
 && rm -rf /var/lib/apt/lists/*
# With GPU=1: the NVIDIA Vulkan ICD manifest. The driver library itself is mounted into the
# container by the NVIDIA container toolkit when run with --gpus.
RUN if [ "$GPU" = "1" ]; then \
      mkdir -p /etc/vulkan/icd.d && \
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3"}}\n' \
        > /etc/vulkan/icd.d/nvidia_icd.json; \
    fi
ENV NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility
# A fixed, non-root UID/GID (10001), so that Kubernetes' runAsNonRoot can check it and
# runAsUser/fsGroup can name it. What it runs is root-owned and read-only to it; its home
# is writable for wgpu's autotune cache (~/.cache/cubecl; with a read-only root
# filesystem, point XDG_CACHE_HOME at a writable volume, as deploy/kubernetes does).
RUN groupadd --system --gid 10001 infergraph \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/infergraph \
      --shell /usr/sbin/nologin infergraph
WORKDIR /app
COPY --from=build /src/target/release/infergraph /usr/local/bin/infergraph
COPY config.toml ./config.toml
# Listening beyond the container is the image's default, written into its config rather than
# set by ENV, so that a mounted config's [server] host and port win (INFERGRAPH_HOST and
# INFERGRAPH_PORT still override both, as on the command line).
RUN sed -i 's/^host = "127.0.0.1"$/host = "0.0.0.0"/' config.toml \
 && grep -q '^host = "0.0.0.0"$' config.toml
COPY model-weights ./model-weights
EXPOSE 3000
# `infergraph health` reads the same config and overrides as `serve`, so the probe follows a
# mounted config's port, or INFERGRAPH_PORT, whichever the server itself listens on.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["infergraph", "health", "--config", "/app/config.toml"]
USER 10001:10001
ENTRYPOINT ["infergraph"]
CMD ["serve", "--config", "/app/config.toml"]
