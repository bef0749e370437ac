FROM alpine:3.19 AS base
RUN apk add --no-cache bash

FROM base AS test
COPY . /src
RUN cd /src && ./run-tests.sh

FROM base AS lint
COPY . /src
RUN cd /src && ./lint.sh

FROM base AS release
COPY --from=test /src/dist /dist
CMD ["/bin/bash"]
