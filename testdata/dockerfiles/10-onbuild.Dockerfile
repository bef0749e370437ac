FROM busybox:1.36 AS template
ONBUILD COPY . /app/src
ONBUILD RUN echo "built on $(date)" > /app/BUILD

FROM template
WORKDIR /app
CMD ["sh", "-c", "cat /app/BUILD"]
