#!/usr/bin/env bash
# Start the Docker engine as HOST.md describes, unless one already answers.
# --iptables=false --ip-forward=false: containers get no route off the machine.
# --default-address-pool: binderq gives every server its own bridge network; Docker's
# default pools hold only about 31 networks, this one 4096 (/27 each, 30 addresses).
# --bip: the default bridge (docker0: builds, and bench/burst.py's raw `docker run`s) has a
# /22 of its own, outside that pool; from the pool it would get a /27, 29 containers at most.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! pgrep -x dockerd >/dev/null; then
  rm -f /var/run/docker.pid  # left by a dockerd that was killed; blocks the next start
  echo "setup: starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd --storage-driver=overlay2 --iptables=false --ip-forward=false \
    --ip-masq=false --default-address-pool base=172.18.0.0/15,size=27 --bip 172.20.0.1/22 \
    >/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not start; see /var/log/dockerd.log" >&2
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
