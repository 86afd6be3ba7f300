#!/usr/bin/env bash
# Install and start everything binderq needs on a Debian machine, idempotently:
# Docker engine (started), debootstrap, node + configurable-http-proxy, a Python venv with
# binderq installed (.venv), and the notebook image built from Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v git >/dev/null || need_apt+=(git)
command -v iptables >/dev/null || need_apt+=(iptables)  # deploy/firewall.sh; the tests install it
command -v docker-registry >/dev/null || need_apt+=(docker-registry)  # images reach every Docker host (docs/scaling.md)
command -v wrk >/dev/null || need_apt+=(wrk)  # the benchmarks' load generator
# tests/integration/test_browser.py: Playwright drives Debian's chromium (never `playwright install`)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)  # Debian splits it out
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v configurable-http-proxy >/dev/null; then
  echo "setup: installing configurable-http-proxy"
  npm install -g --silent configurable-http-proxy@5 >/dev/null
fi

bash deploy/start-dockerd.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# Jupyter Kernel Gateway for tests/integration/test_applications.py: Debian does not package
# it and image builds have no network, so its wheels (for the notebook image's Python 3.11)
# are fetched here, once, and copied into a test image.
wheels=.cache/wheels/kernel-gateway
if [ ! -f "$wheels/.complete" ]; then
  echo "setup: downloading jupyter-kernel-gateway wheels into $wheels"
  mkdir -p "$wheels"
  .venv/bin/pip download -q --disable-pip-version-check -d "$wheels" --only-binary=:all: \
    --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    'jupyter-kernel-gateway>=3,<4'
  touch "$wheels/.complete"
fi

bash deploy/build-notebook-image.sh
