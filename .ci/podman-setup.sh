#!/bin/sh
# Install and configure podman for `podman kube play`, and build the local test image
# localhost/integr8s-python:3.11-full (Debian bookworm's python3: the full standard library).
# Idempotent: a second run with everything in place takes about a second. Needs root and the
# Debian package registry.
#
# Not python3-minimal: without ctypes the in-pod wrapper cannot make itself non-dumpable and
# refuses to run any script (an image built from it was localhost/integr8s-python:3.11, from
# bookworm-python3-minimal.tar; both are left alone and no longer used).
# See /work/shared/ENVIRONMENT.md: crun fails on this kind's hybrid cgroups, hence runc.
set -eu

IMAGE=${INTEGR8S_PODMAN_IMAGE:-localhost/integr8s-python:3.11-full}
CACHE=${INTEGR8S_PODMAN_CACHE:-/var/cache/integr8s/podman}

if [ "$(id -u)" != 0 ]; then
    echo "podman-setup: needs root (apt-get, /etc/containers)" >&2
    exit 1
fi

# catatonit is podman's pause binary, only a "recommends" of podman: name it.
missing=""
for pkg in podman catatonit runc debootstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "podman-setup: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

CONF=/etc/containers/containers.conf
WANT='# integr8s: written by .ci/podman-setup.sh
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ "$(cat "$CONF" 2>/dev/null)" != "$WANT" ]; then
    mkdir -p /etc/containers
    [ -f "$CONF" ] && cp "$CONF" "$CONF.before-integr8s"
    printf '%s\n' "$WANT" > "$CONF"
    echo "podman-setup: wrote $CONF"
fi

# The wrapper needs ctypes (prctl), and the tests drive its json and resource paths.
has_stdlib() {
    podman run --rm --network none "$IMAGE" python3 -c "import ctypes, json, resource" \
        >/dev/null 2>&1
}

if podman image exists "$IMAGE"; then
    if has_stdlib; then
        echo "podman-setup: $IMAGE is ready"
        exit 0
    fi
    echo "podman-setup: $IMAGE lacks ctypes, json or resource; building it again" >&2
    podman rmi -f "$IMAGE" >/dev/null
fi

mkdir -p "$CACHE"
TARBALL="$CACHE/bookworm-python3.tar"
if [ ! -s "$TARBALL" ]; then
    ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$ROOTFS"' EXIT
    echo "podman-setup: debootstrap bookworm with python3 (about a minute)"
    debootstrap --variant=minbase --include=python3 bookworm "$ROOTFS" >/dev/null
    tar -C "$ROOTFS" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
fi
podman import --quiet --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" "$TARBALL" "$IMAGE" >/dev/null
if ! has_stdlib; then
    echo "podman-setup: $IMAGE was built but its python3 lacks ctypes, json or resource" >&2
    exit 1
fi
echo "podman-setup: built $IMAGE"
