#!/bin/sh
# Start a Docker daemon if none answers; idempotent and bounded.
#
# Exit 0 as soon as `docker info` works. Otherwise launch `dockerd` in the background
# (no systemd here or in CI), log to $DOCKERD_LOG, and wait up to $DOCKERD_WAIT seconds
# for it to answer. Exit 1 with the log tail when it does not.
set -eu

LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
WAIT="${DOCKERD_WAIT:-30}"

if docker info >/dev/null 2>&1; then
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "start-dockerd: dockerd not found (apt-get install docker.io)" >&2
    exit 1
fi

# A stale pid file from a dead daemon makes dockerd refuse to start.
PIDFILE=/var/run/docker.pid
if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    rm -f "$PIDFILE"
fi

if [ ! -f "$PIDFILE" ]; then
    mkdir -p "$(dirname "$LOG")"
    # setsid: the daemon must outlive the shell (and CI step) that started it.
    setsid dockerd ${DOCKERD_ARGS:-} >>"$LOG" 2>&1 </dev/null &
fi

deadline=$(( $(date +%s) + WAIT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if docker info >/dev/null 2>&1; then
        echo "start-dockerd: dockerd is up (log: $LOG)"
        exit 0
    fi
    sleep 0.2
done

echo "start-dockerd: dockerd did not answer within ${WAIT}s; last log lines:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
