# listgate container image.
#
#   docker build -t listgate .
#   docker run -p 8080:8080 -v listgate-data:/var/lib/listgate \
#     -e LISTGATE_SERVER__BASE_URL=https://lists.example.com listgate
#
# Two stages: a full Rust toolchain builds the binary, and only the binary
# goes into a small Debian image. Both stages are bookworm, so the binary
# runs against the same glibc it was linked with.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads: the pages, mails and stylesheet (templates/) and
# the schemas (schema.sql, schema.postgres.sql) are compiled into the binary by askama and
# include_str!, so the runtime image needs neither. --locked builds exactly
# the dependency versions in Cargo.lock.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY schema.sql schema.postgres.sql ./
RUN cargo build --release --locked --bin listgate

FROM debian:bookworm-slim
# curl only for HEALTHCHECK. No ca-certificates: for TLS to the mail server
# listgate trusts the public roots built into it (webpki-roots) and
# `mail.ca_file`, never the system store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so a host directory mounted as the volume can be chown'ed to
# it (chown 10001 DIR) and the files keep one owner across image rebuilds.
RUN groupadd --system --gid 10001 listgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/listgate \
        --shell /usr/sbin/nologin listgate \
    && mkdir -p /var/lib/listgate \
    && chown listgate:listgate /var/lib/listgate \
    && chmod 0700 /var/lib/listgate
COPY --from=build /src/target/release/listgate /usr/local/bin/listgate

# The default relative paths (listgate.db, listgate.key, mail/) resolve here,
# so the database, the secret key and the .eml folder all land in the volume.
# Declared after the chown: a new named volume starts with this owner.
WORKDIR /var/lib/listgate
VOLUME ["/var/lib/listgate"]

# The default bind is 127.0.0.1:8080, which is unreachable from outside a
# container. Set LISTGATE_SERVER__BASE_URL to the public URL: every link in
# every mail is built from it.
ENV LISTGATE_SERVER__BIND=0.0.0.0:8080
EXPOSE 8080
# /metrics is off unless LISTGATE_SERVER__METRICS_BIND is set, and never on
# the port above. For a Prometheus on the same container network, set it to
# 0.0.0.0:9464 and do not publish that port to the internet.

# Numeric, so runtimes that enforce non-root (runAsNonRoot) can check it.
USER 10001:10001
# /healthz answers 200 only when the database answers. If you change the
# bind port, change this too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

# Logs go to stderr (docker logs); SIGTERM (docker stop) shuts down
# gracefully and lets the outbox finish the mails in flight.
ENTRYPOINT ["listgate"]
CMD ["serve"]
