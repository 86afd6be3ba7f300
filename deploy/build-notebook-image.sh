#!/usr/bin/env bash
# Build a real Jupyter notebook image from Debian packages (no registry needed).
# Skips the build when the image of this recipe's version is already on the engine.
# Usage: deploy/build-notebook-image.sh [IMAGE]   (default: binderq/notebook:bookworm)
set -euo pipefail

image="${1:-${BINDERQ_NOTEBOOK_IMAGE:-binderq/notebook:bookworm}}"
# Bump when the recipe below changes, so that machines with an older image rebuild it.
# 2: pip, for requirements.txt builds; ~/.local/bin on PATH.
version=2

present=$(docker image inspect --format '{{ index .Config.Labels "binderq.notebook.version" }}' \
  "$image" 2>/dev/null || true)
if [ "$present" = "$version" ]; then
  echo "notebook image $image (version $version) already present"
  exit 0
fi

command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: apt-get install -y debootstrap" >&2
  exit 1
}

# Use the mirror apt is already configured with (there is no other network).
mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
fi
mirror="${mirror:-http://deb.debian.org/debian}"

old_id=$(docker image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
root=$(mktemp -d /var/tmp/binderq-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "building $image from Debian packages ($mirror), about 90 s"
debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" >/dev/null
# python3-notebook cannot go in --include (virtual dependency); a second step works.
chroot "$root" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends python3-notebook python3-pip >/dev/null
chroot "$root" apt-get clean
# A non-root user for the notebook; the image runs as jovyan, as repo2docker images do.
chroot "$root" useradd --create-home --uid 1000 --shell /bin/bash jovyan
rm -rf "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
  --change 'WORKDIR /home/jovyan' \
  --change 'ENV LANG=C.UTF-8 HOME=/home/jovyan PATH=/home/jovyan/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL binderq.notebook.version=$version" \
  --change 'EXPOSE 8888' \
  --change 'USER jovyan' \
  --change 'CMD ["python3", "-m", "notebook", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root"]' \
  - "$image" >/dev/null
if [ -n "$old_id" ]; then  # the older version, unless images built on it still need it
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "built $image (version $version)"
