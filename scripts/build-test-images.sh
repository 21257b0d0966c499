#!/bin/sh
# Build the images the tests use, locally: nothing can be pulled on the test machines.
#
# studios-test/busybox:latest is a rootfs made of Debian's statically linked busybox
# (package busybox-static) with every applet linked into /bin (sh, httpd, nc, head, tail,
# sleep...), imported with `docker import`. Its command runs the shell code in $APP_CMD (params
# become env, so a test picks the app's behaviour that way) and by default serves its working
# directory with `httpd -f -p $PORT`; WORKDIR /srv holds an index.html.
#
# Idempotent and fast: the image carries a label with a hash of the busybox binary and of
# this recipe, and is rebuilt only when that changes (or when FORCE=1).
set -eu

IMAGE="${STUDIOS_TEST_IMAGE:-studios-test/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
RECIPE=4   # bump when the rootfs layout below changes

if ! [ -x "$BUSYBOX" ] || ! "$BUSYBOX" --list >/dev/null 2>&1; then
    echo "build-test-images: $BUSYBOX missing (apt-get install busybox-static)" >&2
    exit 1
fi
if file -L "$BUSYBOX" 2>/dev/null | grep -q dynamically; then
    echo "build-test-images: $BUSYBOX is dynamically linked; need busybox-static" >&2
    exit 1
fi

want="$( (sha256sum "$BUSYBOX" | cut -d' ' -f1; echo "$RECIPE") | sha256sum | cut -c1-16)"
have="$(docker image inspect -f '{{ index .Config.Labels "studios.test-recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$want" ]; then
    echo "build-test-images: $IMAGE is up to date"
    exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/srv" "$root/root" "$root/proc" \
         "$root/sys" "$root/dev" "$root/workspace"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
ln -s bin "$root/sbin"
mkdir -p "$root/usr" && ln -s ../bin "$root/usr/bin" && ln -s ../bin "$root/usr/sbin"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo 'hello from studios-test' >"$root/srv/index.html"

tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'WORKDIR /srv' \
    --change 'CMD ["/bin/sh", "-c", "eval \"${APP_CMD:-exec httpd -f -p ${PORT:-8080}}\""]' \
    --change "LABEL studios.test-recipe=$want" \
    - "$IMAGE" >/dev/null
echo "build-test-images: built $IMAGE"
