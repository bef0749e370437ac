# syntax=docker/dockerfile:1.4
FROM ubuntu:22.04
RUN <<EOF
apt-get update
apt-get install -y nginx
rm -rf /var/lib/apt/lists/*
EOF
COPY <<-EOT /etc/nginx/conf.d/default.conf
	server {
	    listen 80;
	    location / { root /srv; }
	}
EOT
COPY <<EOT /srv/index.html
<h1>hello from $HOSTNAME</h1>
EOT
RUN <<A cat > /a.txt && <<B cat > /b.txt
first
A
second
B
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
