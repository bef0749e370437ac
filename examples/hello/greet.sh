#!/bin/sh
echo "$GREETING, $1!"
cat /app/build-info.txt
echo "running as $(id -un) in $(pwd)"
