FROM debian:bookworm-slim
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tool-1.0.tar.gz /tmp/
ADD https://example.com/config.json /etc/app/
ADD vendor.tar.gz /opt/vendor/
ADD --chown=1000:1000 --chmod=644 files/ /srv/files/
