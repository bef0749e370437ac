FROM alpine:3.19 AS assets
RUN mkdir -p /out/css /out/js && touch /out/css/a.css /out/js/a.js /out/js/a.map

FROM scratch
COPY --from=assets --exclude=*.map /out/ /static/
COPY --link --from=assets /out/css /css
COPY --parents ./configs/**/*.yaml /etc/app/
COPY --chmod=u=rwx,go=rx bin/ /usr/local/bin/
COPY --from=0 /out/js/a.js /a.js
