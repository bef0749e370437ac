# escape=`
FROM busybox
RUN echo one `
    && echo two
COPY a.txt `
     /dest/
ENV GREETING="hello `$USER"
