# infergraph: a multi-stage build into a slim runtime image.
#
#   docker build -t infergraph .                        # CPU hosts (backend "auto" picks the CPU)
#   docker build -t infergraph:gpu --build-arg GPU=1 .  # NVIDIA hosts: Vulkan loader + NVIDIA ICD
#   docker run -p 3000:3000 infergraph
#   docker run --gpus all -p 3000:3000 infergraph:gpu
#   docker run -p 3000:3000 -v /models:/models -v "$PWD/my-config.toml:/app/config.toml" infergraph
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
 && apt-get install -y --no-install-recommends ca-certificates curl libvulkan1 \
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
COPY model-weights ./model-weights
ENV INFERGRAPH_HOST=0.0.0.0 INFERGRAPH_PORT=3000
EXPOSE 3000
# Shell form, so the port follows INFERGRAPH_PORT (docker run -e INFERGRAPH_PORT=8080 ...).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD curl -fsS "http://127.0.0.1:${INFERGRAPH_PORT:-3000}/livez" || exit 1
USER 10001:10001
ENTRYPOINT ["infergraph"]
CMD ["serve", "--config", "/app/config.toml"]
