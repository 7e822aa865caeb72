# offsite: a static-stdlib release build (the Swift 6.3 toolchain the project is tested with)
# copied into a slim Debian runtime. scripts/check-image.sh proves the runtime stage in CI.
#
#   docker build -t offsite .
#   docker run -v crm-data:/data -v offsite-backups:/backups -v ./config:/config:ro \
#              -e OFFSITE_CONFIG=/config/offsite.json offsite

FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libsqlite3-dev zlib1g-dev libsodium-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
RUN swift build -c release --static-swift-stdlib --product offsite \
 && install -m 0755 "$(swift build -c release --static-swift-stdlib --show-bin-path)/offsite" /usr/local/bin/offsite

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libsqlite3-0 zlib1g libsodium23 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin offsite \
 && mkdir -p /data /backups /config \
 && chown offsite:offsite /backups \
 && chmod 0700 /backups
COPY --from=build /usr/local/bin/offsite /usr/local/bin/offsite
USER offsite
VOLUME ["/data", "/backups", "/config"]
HEALTHCHECK --interval=5m --timeout=60s --start-period=10m --retries=1 CMD ["offsite", "healthcheck"]
ENTRYPOINT ["offsite"]
CMD ["run"]
