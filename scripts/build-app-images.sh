#!/bin/sh
# Build Docker images for the app recipes of docs/apps.md, locally: nothing is pulled.
#
#   scripts/build-app-images.sh [jupyterlab] [streamlit] [shiny] [dash]   (default: all four)
#
# 1. studios-apps/base: a Debian 12 root file system made by `debootstrap --variant=minbase`
#    from Debian's packages (python3, python3-venv, passwd, ca-certificates), imported with
#    `docker import`, with a user `app` (uid 1000). The rootfs tarball is cached.
# 2. studios-apps/<app>: the base plus a virtualenv in /opt/app holding the app's pinned PyPI
#    packages (the versions of pyproject.toml's test extras). The wheels are fetched on this host
#    with `pip download` (CPython 3.11 on x86_64, which is Debian 12's python3) into the cache and
#    installed in the build with `--no-index`, so the build itself needs no network.
#    The command is the recipe of docs/apps.md, listening on 0.0.0.0:$PORT and serving under
#    $STUDIOS_BASE_PATH, as user `app` in /home/app (the Docker runtime's PORT is 8080).
#
# Idempotent: an image carrying this recipe's label is kept unless FORCE=1. Cache:
# $STUDIOS_IMAGE_CACHE (default /var/cache/studios-images): 168 MB of rootfs tarball and 205 MB
# of wheels for the four apps. Costs measured on a 2-core machine are in docs/apps.md.
set -eu

CACHE="${STUDIOS_IMAGE_CACHE:-/var/cache/studios-images}"
SUITE=bookworm
RECIPE=1   # bump when what the images hold changes
PYTHON="${PYTHON:-python3}"
APPS="${*:-jupyterlab streamlit shiny dash}"

pins() {  # the PyPI requirement of each app (keep in step with pyproject.toml's test extras)
    case "$1" in
        jupyterlab) echo "jupyterlab==4.6.6" ;;
        streamlit) echo "streamlit==1.67.0" ;;
        shiny) echo "shiny==1.8.0" ;;
        dash) echo "dash==4.4.1" ;;
        *) echo "build-app-images: unknown app $1 (jupyterlab, streamlit, shiny, dash)" >&2; exit 2 ;;
    esac
}

command_of() {  # the recipe (docs/apps.md), for a container
    case "$1" in
        jupyterlab) echo 'exec /opt/app/bin/jupyter-lab --no-browser --ip=0.0.0.0 --port="$PORT" --ServerApp.base_url="${STUDIOS_BASE_PATH:-/}" --ServerApp.allow_remote_access=True --IdentityProvider.token= --ServerApp.password= --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate' ;;
        streamlit) echo 'exec /opt/app/bin/streamlit run "${STREAMLIT_APP:-streamlit_app.py}" --server.port="$PORT" --server.address=0.0.0.0 --server.headless=true --server.baseUrlPath="${STUDIOS_BASE_PATH:-/}" --server.fileWatcherType=none --browser.gatherUsageStats=false' ;;
        shiny) echo 'exec /opt/app/bin/shiny run --host 0.0.0.0 --port "$PORT" "${SHINY_APP:-app.py}"' ;;
        dash) echo 'export DASH_URL_BASE_PATHNAME="${STUDIOS_BASE_PATH:-/}"; exec /opt/app/bin/flask --app "${DASH_APP:-app}:server" run --host 0.0.0.0 --port "$PORT" --no-reload --no-debugger' ;;
    esac
}

mkdir -p "$CACHE"
label() { docker image inspect -f '{{ index .Config.Labels "studios.app-recipe" }}' "$1" 2>/dev/null || true; }

# -- the base image ----------------------------------------------------------------------
if [ "${FORCE:-0}" = 1 ] || [ "$(label studios-apps/base)" != "$RECIPE" ]; then
    tarball="$CACHE/rootfs-$SUITE-$RECIPE.tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || { echo "build-app-images: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
        root="$CACHE/rootfs-$SUITE.tmp"
        rm -rf "$root"
        debootstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates "$SUITE" "$root"
        chroot "$root" useradd --uid 1000 --create-home --shell /bin/sh app
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    docker import -c "LABEL studios.app-recipe=$RECIPE" -c 'ENV LANG=C.UTF-8' "$tarball" studios-apps/base
fi

# -- one image per app ---------------------------------------------------------------------
for app in $APPS; do
    pin="$(pins "$app")"
    image="studios-apps/$app"
    if [ "${FORCE:-0}" != 1 ] && [ "$(label "$image")" = "$RECIPE:$pin" ]; then
        echo "build-app-images: $image is up to date"
        continue
    fi
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    wheels="$CACHE/wheels/$app"
    mkdir -p "$wheels"
    "$PYTHON" -m pip download --quiet --dest "$wheels" --only-binary=:all: \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --python-version 3.11 --implementation cp "$pin"
    cp -r "$wheels" "$context/wheels"
    cat > "$context/Dockerfile" <<DOCKERFILE
FROM studios-apps/base
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/app && /opt/app/bin/pip install --no-index --find-links /tmp/wheels --no-compile --quiet "$pin" && rm -rf /tmp/wheels
USER app
WORKDIR /home/app
ENV PORT=8080 HOME=/home/app
LABEL studios.app-recipe="$RECIPE:$pin"
CMD ["/bin/sh", "-c", $(printf '%s' "$(command_of "$app")" | "$PYTHON" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
DOCKERFILE
    docker build --quiet --network none -t "$image" "$context"
    rm -rf "$context"
    trap - EXIT
    echo "build-app-images: built $image"
done
