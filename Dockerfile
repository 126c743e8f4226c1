# infergraph: build once, run the graph on the embedded demo models (or mount real ones).
#   docker build -t infergraph .
#   docker run -p 3000:3000 infergraph
#   docker run -p 3000:3000 -v /models:/models -v ./my-config.toml:/app/config.toml infergraph
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY model-weights ./model-weights
RUN cargo build --release --locked --bin infergraph

FROM debian:bookworm-slim
# libvulkan1 lets wgpu find a GPU's Vulkan driver (mounted by the container runtime);
# without one, `backend = "auto"` serves from the CPU.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/infergraph /usr/local/bin/infergraph
COPY config.toml ./config.toml
COPY model-weights ./model-weights
ENV INFERGRAPH_HOST=0.0.0.0
EXPOSE 3000
ENTRYPOINT ["infergraph"]
CMD ["serve", "--config", "/app/config.toml"]
