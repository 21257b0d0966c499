#!/bin/sh
# Build the example's Docker image, localhost/studios-hello:latest, on this machine: no
# Dockerfile, no registry, no network. Its root filesystem is Debian's statically linked busybox
# (package busybox-static) and index.html, imported with `docker import`; it serves the page with
# busybox's httpd on $PORT, or the checkout at /workspace when a studio deploys it from a git
# repository that holds an index.html. (The host-process runtime runs app.py instead: same page.)
#
# Idempotent: the image carries a label with a hash of busybox, index.html and this recipe, and
# is rebuilt only when one changes (or with FORCE=1). `scripts/serve` runs it when Docker answers.
set -eu
cd "$(dirname "$0")"

IMAGE="${STUDIOS_HELLO_IMAGE:-localhost/studios-hello:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
RECIPE=1   # bump when the layout below changes

if ! [ -x "$BUSYBOX" ] || ! "$BUSYBOX" --list >/dev/null 2>&1 || ! "$BUSYBOX" --list | grep -qx httpd; then
    echo "build-image: $BUSYBOX with httpd is missing (apt-get install busybox-static)" >&2
    exit 1
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "build-image: $BUSYBOX is dynamically linked; need busybox-static" >&2
    exit 1
fi

want="$( (sha256sum "$BUSYBOX" index.html | cut -d' ' -f1; echo "$RECIPE") | sha256sum | cut -c1-16)"
have="$(docker image inspect -f '{{ index .Config.Labels "studios.example-recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$want" ]; then
    echo "build-image: $IMAGE is up to date"
    exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/srv/hello" "$root/workspace" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in sh httpd test [ ls cat env sleep; do ln -s busybox "$root/bin/$applet"; done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
cp index.html "$root/srv/hello/index.html"

tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'WORKDIR /srv/hello' \
    --change 'CMD ["/bin/sh", "-c", "www=/srv/hello; [ -f /workspace/index.html ] && www=/workspace; echo \"hello: serving $www on port ${PORT:-8080} (deployment ${STUDIOS_DEPLOYMENT_ID:-?})\"; exec httpd -f -v -p \"${PORT:-8080}\" -h \"$www\""]' \
    --change "LABEL studios.example-recipe=$want" \
    - "$IMAGE" >/dev/null
echo "build-image: built $IMAGE"
