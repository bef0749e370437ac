ARG ALPINE=3.19
FROM alpine:${ALPINE}
ARG VERSION=0.0.0
ARG BUILD_DATE
LABEL org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.created=$BUILD_DATE \
      maintainer="ops@example.com"
RUN apk add --no-cache tini su-exec \
 && addgroup -S app && adduser -S -G app app
COPY --chown=app:app --chmod=0755 entrypoint.sh /usr/local/bin/
ENTRYPOINT ["/sbin/tini", "--", "entrypoint.sh"]
