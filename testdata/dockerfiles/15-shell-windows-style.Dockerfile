FROM busybox
SHELL ["/bin/sh", "-eux", "-c"]
RUN echo strict
SHELL ["/bin/sh", "-c"]
RUN echo default
ENTRYPOINT echo shell form entrypoint
