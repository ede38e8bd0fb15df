# syntax=docker/dockerfile:1
# nestbot serve, the GitHub App's webhook server, as a container: a static
# binary on distroless, running as nonroot.
#
#   docker build -t nestbot .
#   docker run -p 8080:8080 -v nestbot-state:/var/lib/nestbot \
#     -e NESTBOT_WEBHOOK_SECRET_FILE=/run/secrets/webhook \
#     -e NESTBOT_GITHUB_APP_ID=123 -e NESTBOT_GITHUB_APP_KEY_FILE=/run/secrets/app.pem \
#     nestbot
#
# Health: orchestrators probe GET /healthz (liveness: the process serves)
# and GET /readyz (readiness: the workers run and the state answers) on the
# listen port, as Kubernetes' httpGet probes do. The image has no shell and
# no curl, so it declares no HEALTHCHECK: Docker's would run one inside the
# container; check from outside instead.

# Base images are pinned by digest (the tag beside it says what it is);
# Dependabot's docker ecosystem (.github/dependabot.yml) moves them.
FROM golang:1.26.8@sha256:6c2a5538f964f1c82f97ad14988bf05de100d922d159d0e398b54c7b0ca0c6c9 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# What nestbot version prints: docker build --build-arg VERSION=v1.2.3
# --build-arg REVISION=$(git rev-parse HEAD) (the release's image is
# GoReleaser's, release.Dockerfile). Unset, it says "devel".
ARG VERSION="" REVISION=""
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w \
      -X github.com/ducksnest/nestbot/internal/buildinfo.version=${VERSION} \
      -X github.com/ducksnest/nestbot/internal/buildinfo.commit=${REVISION}" \
      -o /out/nestbot ./cmd/nestbot \
    && mkdir -p /out/state

# static-debian12 carries CA certificates, tzdata and the nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
ARG VERSION="" REVISION=""
LABEL org.opencontainers.image.title="nestbot" \
      org.opencontainers.image.description="nestbot serve: GitOps for a NixOS fleet, as a GitHub App" \
      org.opencontainers.image.source="https://github.com/ducksnest/nestbot" \
      org.opencontainers.image.url="https://github.com/ducksnest/nestbot" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/nestbot /nestbot
# The state: the bbolt file (locks, jobs, saved plans) and the tailnet
# node's keys. Keep it on a volume, or point --state-dir elsewhere.
COPY --from=build --chown=65532:65532 /out/state /var/lib/nestbot
ENV NESTBOT_STATE_DIR=/var/lib/nestbot
VOLUME ["/var/lib/nestbot"]
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/nestbot", "serve"]
CMD ["--listen", ":8080"]
