# Shared by scripts/swarm-up, scripts/swarm-down and the node scripts: a 3-node Docker Swarm on
# one machine, each node its own dockerd in its own network, mount, UTS and PID namespaces.
#
# Layout (fixed: one such swarm per machine):
#   host veth swh0 = 10.231.0.254/24 ── netns swsw: bridge swbr0 (the "switch")
#   netns swn1..3: eth0 = 10.231.0.1..3/24; no default route anywhere, so nothing leaves the segment.
# Node N = a holder (docker-init as PID 1 of the node's mount/UTS/PID namespaces, in netns swnN)
# and a dockerd entered into those namespaces with nsenter. Files under $SWARM_DIR/nN:
#   holder.pid (host pid of the node's PID 1), dockerd.hostpid, docker.sock, data/ (data-root),
#   dockerd.log, holder.log.
# Source this file; it sets SWARM_DIR (from STUDIOS_SWARM_DIR, default /tmp/studios-swarm).

SWARM_DIR="${STUDIOS_SWARM_DIR:-/tmp/studios-swarm}"
SWARM_NODES="1 2 3"
SWARM_SUBNET_PREFIX=10.231.0
SWARM_HOST_ADDR=$SWARM_SUBNET_PREFIX.254
SWARM_IMAGE="${STUDIOS_TEST_IMAGE:-studios-test/busybox:latest}"
# Node labels: swn1 is the cpu partition, swn2 and swn3 the gpu partition (two gpu nodes, so a
# gpu deployment has somewhere to go when its node dies). Fake GPUs as generic resources.
swarm_partition() { case $1 in 1) echo cpu ;; *) echo gpu ;; esac; }
swarm_node_args() {
  case $1 in
    2|3) echo "--node-generic-resource NVIDIA-GPU=GPU-n$1-0 --node-generic-resource NVIDIA-GPU=GPU-n$1-1" ;;
  esac
}
# Failure detection: the manager expects a heartbeat every second (default 5 s) and declares a
# silent node down after about three missed ones.
SWARM_HEARTBEAT="${STUDIOS_SWARM_HEARTBEAT:-1s}"

swarm_log() { printf '%s: %s\n' "${SWARM_SCRIPT:-swarm}" "$*" >&2; }
swarm_die() { swarm_log "$*"; exit 1; }

# d N ARGS...: the docker CLI against node N's engine.
d() { local n=$1; shift; docker -H "unix://$SWARM_DIR/n$n/docker.sock" "$@"; }

swarm_need() {
  [ "$(id -u)" = 0 ] || swarm_die "must run as root (network namespaces, dockerd)"
  local missing=() cmd
  for cmd in ip nsenter unshare dockerd docker docker-init flock; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  ((${#missing[@]} == 0)) || swarm_die "missing commands: ${missing[*]} (apt-get install iproute2 util-linux docker.io)"
}

# An epoch with sub-second precision, for the timings printed at the end.
swarm_now() { date +%s.%N; }
swarm_since() { awk -v a="$1" -v b="$(swarm_now)" 'BEGIN { printf "%.2f", b - a }'; }

# wait_for SECONDS STEP COMMAND...: run COMMAND until it succeeds or SECONDS have passed.
wait_for() {
  local limit=$1 step=$2; shift 2
  local deadline; deadline=$(awk -v n="$(swarm_now)" -v l="$limit" 'BEGIN { printf "%.3f", n + l }')
  while true; do
    "$@" && return 0
    awk -v n="$(swarm_now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' && return 1
    sleep "$step"
  done
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
holder_alive() {  # the node's PID 1 lives and is still docker-init
  local h; h=$(cat "$SWARM_DIR/n$1/holder.pid" 2>/dev/null) || return 1
  pid_alive "$h" && [ "$(readlink "/proc/$h/exe" 2>/dev/null)" = "$(readlink -f /usr/bin/docker-init)" ]
}
engine_up() { d "$1" version >/dev/null 2>&1; }
# The host pid of node N's dockerd, found by its command line (its data-root is the node's own),
# not trusted from a pid file: a node may have been rebooted by another script meanwhile.
dockerd_pid() {
  local want="dockerd --data-root $SWARM_DIR/n$1/data " p cmd
  for p in /proc/[0-9]*; do
    cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    [[ "$cmd" == "$want"* ]] && { echo "${p#/proc/}"; return 0; }
  done
  return 1
}

# No `cmd | grep -q` under pipefail: grep exits at the first match, cmd may die of SIGPIPE and
# the pipeline then reads as false. Capture, then match.
has_netns() { local all; all=$(ip netns list 2>/dev/null) || return 1; [[ $'\n'"$all"$'\n' == *$'\n'"$1"[$' \n']* ]]; }
has_addr() {  # has_addr NETNS|"" DEV CIDR
  local out
  if [ -n "$1" ]; then out=$(ip -n "$1" addr show dev "$2" 2>/dev/null) || return 1
  else out=$(ip addr show dev "$2" 2>/dev/null) || return 1; fi
  [[ "$out" == *" $3 "* ]]
}

net_up() {  # idempotent: creates only what is missing
  has_netns swsw || ip netns add swsw
  ip -n swsw link show swbr0 >/dev/null 2>&1 || ip -n swsw link add swbr0 type bridge
  ip -n swsw link set swbr0 up
  if ! ip link show swh0 >/dev/null 2>&1; then
    ip link add swh0 type veth peer name host netns swsw
  fi
  ip -n swsw link set host master swbr0 up
  has_addr "" swh0 "$SWARM_HOST_ADDR/24" || ip addr add "$SWARM_HOST_ADDR/24" dev swh0
  ip link set swh0 up
  local i
  for i in $SWARM_NODES; do
    has_netns "swn$i" || ip netns add "swn$i"
    if ! ip -n "swn$i" link show eth0 >/dev/null 2>&1; then
      ip -n swsw link del "swv$i" 2>/dev/null || true
      ip link add eth0 netns "swn$i" type veth peer name "swv$i" netns swsw
    fi
    ip -n swsw link set "swv$i" master swbr0 up
    ip -n "swn$i" link set lo up
    has_addr "swn$i" eth0 "$SWARM_SUBNET_PREFIX.$i/24" || ip -n "swn$i" addr add "$SWARM_SUBNET_PREFIX.$i/24" dev eth0
    ip -n "swn$i" link set eth0 up
  done
}

net_down() {
  local i
  for i in $SWARM_NODES; do ip netns del "swn$i" 2>/dev/null || true; done
  ip netns del swsw 2>/dev/null || true
  ip link del swh0 2>/dev/null || true
}

net_is_up() {
  has_addr "" swh0 "$SWARM_HOST_ADDR/24" || return 1
  local i
  for i in $SWARM_NODES; do ip -n "swn$i" link show eth0 >/dev/null 2>&1 || return 1; done
}

cgroups_clean() {  # the nodes' container cgroups (dockerd --cgroup-parent /swnN), deepest first
  local i c
  for i in $SWARM_NODES; do
    for c in /sys/fs/cgroup/*/swn$i /sys/fs/cgroup/swn$i; do
      [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  done
  return 0
}
