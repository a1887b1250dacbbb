#!/bin/sh
# First start: a self-signed certificate for the name "dovecot" (shared with
# inbox-guard through the /certs volume, for account.ca_file) and the one dev user.
set -eu
mkdir -p /certs /srv/mail
if [ ! -f /certs/dev.pem ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=dovecot" \
    -addext "subjectAltName=DNS:dovecot,DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -keyout /certs/dev.key -out /certs/dev.pem 2>/dev/null
  chmod 600 /certs/dev.key
fi
echo "${DEV_USER:-alex@example.org}:{PLAIN}${DEV_PASSWORD:-dev-password}" > /etc/dovecot/users
chown -R mail:mail /srv/mail
exec dovecot -F
