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

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# VERSION is what nestbot version prints (a release sets it to its tag).
ARG VERSION=""
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/nestbot ./cmd/nestbot \
    && mkdir -p /out/state

# static-debian12 carries CA certificates, tzdata and the nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
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
