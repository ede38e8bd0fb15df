# syntax=docker/dockerfile:1
# nestbot serve as the release builds it: GoReleaser (.goreleaser.yaml,
# dockers_v2) puts the static binary it built for each platform at
# $TARGETPLATFORM/nestbot, and the empty state directory at build/state.
# Everything else is the Dockerfile's last stage: keep the two alike
# (TestDockerfilesPinTheSameRuntime checks).
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
ARG TARGETPLATFORM
COPY $TARGETPLATFORM/nestbot /nestbot
COPY --chown=65532:65532 build/state /var/lib/nestbot
ENV NESTBOT_STATE_DIR=/var/lib/nestbot
VOLUME ["/var/lib/nestbot"]
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/nestbot", "serve"]
CMD ["--listen", ":8080"]
