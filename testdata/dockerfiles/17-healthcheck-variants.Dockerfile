FROM nginx:alpine AS a
HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]

FROM a AS b
HEALTHCHECK --interval=5m --timeout=3s --start-period=10s --start-interval=1s --retries=5 CMD curl -f http://localhost/ || exit 1

FROM b
HEALTHCHECK NONE
