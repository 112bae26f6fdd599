# syntax=docker/dockerfile:1
# Build stage: the release binary, with dependencies cached in a layer of their own.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
COPY assets ./assets
RUN cargo build --release --locked --bin mft

# Runtime stage: slim Debian, CA certificates and time zone data, a non-root user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /app --uid 10001 mft
WORKDIR /app
COPY --from=build /src/target/release/mft /usr/local/bin/mft
COPY migrations ./migrations
COPY prompts ./prompts
RUN mkdir -p /app/data /app/charts && chown -R mft:mft /app
USER mft
ENV DATABASE_URL=sqlite:///app/data/mft.db \
    STATUS_ADDR=0.0.0.0:8501 \
    RUST_LOG=info
EXPOSE 8501
VOLUME ["/app/data", "/app/charts"]
ENTRYPOINT ["mft"]
CMD ["run"]
