# syntax=docker/dockerfile:1
#
# responder: a static binary on a distroless base, running as non-root.
#
#   docker build -t responder \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg BRANCH=$(git rev-parse --abbrev-ref HEAD) .
#   docker run -p 9096:9096 -v $PWD/responder.yml:/etc/responder/config.yml:ro \
#     -v responder-data:/data responder
#
# A config listening on a non-loopback address needs webhook authentication
# (see examples/responder.yml); keep the SQLite database under /data
# (storage.dsn: sqlite:///data/responder.db).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The Makefile's version ldflags read these; .git is not in the build context.
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
# 'version' prints it; the default would name the build container's id.
ARG BUILD_USER=docker
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOFLAGS=-trimpath make build VERSION="$VERSION" REVISION="$REVISION" BRANCH="$BRANCH" BUILD_USER="$BUILD_USER" \
 && bin/responder version \
 && if ldd bin/responder >/dev/null 2>&1; then echo "bin/responder is not static" >&2; exit 1; fi \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/responder /usr/local/bin/responder
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
# distroless's nonroot user.
USER 65532:65532
VOLUME /data
EXPOSE 9096
ENTRYPOINT ["/usr/local/bin/responder", "serve"]
CMD ["--config.file=/etc/responder/config.yml", "--web.listen-address=:9096"]
