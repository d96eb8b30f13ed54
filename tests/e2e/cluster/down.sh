#!/usr/bin/env bash
# Stops everything up.sh started and removes $ZASTAVA_E2E_STATE (the cache is kept).
# Order: kubelet, pod containers (through containerd, then any leftovers), control plane,
# registry, containerd, shims; then unmounts everything under the state dir (and the
# pods' network namespaces), deletes the CNI bridge and removes the state dir.
# Idempotent: safe when nothing runs or the state dir is already gone.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

[[ $(id -u) -eq 0 ]] || die "down.sh must run as root"
case $STATE in
  "" | / | /tmp | /tmp/ | /var | /root | "$HOME") die "refusing to tear down suspicious state dir '$STATE'" ;;
esac

pid_of() {
  local f=$PID_DIR/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -d /proc/$pid ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE" || return 1
  printf '%s\n' "$pid"
}

wait_gone() { # timeout-seconds pid...
  local deadline=$((SECONDS + $1)) p left
  shift
  while :; do
    left=0
    for p in "$@"; do
      # A zombie (state Z) has exited; only its parent can reap it.
      [[ -d /proc/$p && $(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) != Z ]] && left=1
    done
    ((left)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

stop_daemon() { # name [timeout]
  local name=$1 timeout=${2:-15} pid
  if pid=$(pid_of "$name"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    if ! wait_gone "$timeout" "$pid"; then
      log "$name did not exit after ${timeout}s; killing"
      kill -KILL "$pid" 2>/dev/null
      wait_gone 5 "$pid"
    fi
  fi
  rm -f "$PID_DIR/$name.pid"
}

# 1. kubelet first, so nothing restarts pods.
stop_daemon kubelet 15

# 2. Pod containers, through containerd while it still runs.
NETNS_PATHS=()
CONTAINER_IDS=()
if pid_of containerd >/dev/null && [[ -S $CONTAINERD_SOCK ]]; then
  for ns in $(ctr --address "$CONTAINERD_SOCK" namespaces ls -q 2>/dev/null); do
    CTR=(ctr --address "$CONTAINERD_SOCK" --namespace "$ns")
    ids=$("${CTR[@]}" containers ls -q 2>/dev/null)
    [[ -n $ids ]] || continue
    log "removing $(wc -w <<<"$ids") containers in containerd namespace $ns"
    for id in $ids; do
      p=$("${CTR[@]}" containers info "$id" 2>/dev/null |
        jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty' 2>/dev/null)
      [[ -n $p ]] && NETNS_PATHS+=("$p")
      CONTAINER_IDS+=("$id")
      "${CTR[@]}" tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1
    done
    sleep 0.5
    for id in $ids; do
      "${CTR[@]}" tasks delete --force "$id" >/dev/null 2>&1
      "${CTR[@]}" containers delete "$id" >/dev/null 2>&1
    done
  done
fi

# 3. kube-proxy, and the iptables rules it wrote; control plane and registry.
stop_daemon kube-proxy 10
if [[ -x $K8S_BIN/kube-proxy ]] && iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
  log "removing kube-proxy's iptables rules"
  # Its exit status also covers IPVS sets (no ipset here): what counts is that the chains went.
  "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
  ! iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1 || log "WARNING: kube-proxy's iptables rules are still there"
fi
stop_daemon kube-scheduler 10
stop_daemon kube-controller-manager 10
stop_daemon kube-apiserver 15
stop_daemon etcd 15
stop_daemon registry 10

# 4. containerd, then any shim it left behind.
stop_daemon containerd 15
shims=$(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" || true)
if [[ -n $shims ]]; then
  log "killing leftover containerd shims: $(tr '\n' ' ' <<<"$shims")"
  # shellcheck disable=SC2086
  kill -KILL $shims 2>/dev/null
fi

# 5. Any process still tied to the state dir: our daemons (by command line) or container
#    processes (by their root directory, a rootfs under the state dir).
leftover=()
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [[ $p == "$$" || $p == "$BASHPID" ]] && continue
  root=$(readlink "$d/root" 2>/dev/null) || continue
  if [[ $root == "$STATE"/* ]] ||
    tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$STATE/"; then
    leftover+=("$p")
  fi
done
if ((${#leftover[@]} > 0)); then
  log "killing leftover processes: ${leftover[*]}"
  kill -KILL "${leftover[@]}" 2>/dev/null
  wait_gone 10 "${leftover[@]}"
fi

# 6. Unmount everything under the state dir (deepest first), and the pods' netns.
unmount_under() { # dir
  local mp
  # mountinfo field 5 is the mount point (octal-escaped).
  awk -v d="$1" '{ mp = $5; gsub(/\\040/, " ", mp); if (mp == d || index(mp, d "/") == 1) print mp }' \
    /proc/self/mountinfo | sort -r -u | while IFS= read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "WARNING: could not unmount $mp"
  done
}
if [[ -d $STATE ]]; then
  for _ in 1 2 3; do
    grep -qF " $STATE" /proc/self/mountinfo || break
    log "unmounting under $STATE"
    unmount_under "$STATE"
  done
fi
for p in "${NETNS_PATHS[@]}"; do
  [[ -e $p ]] || continue
  umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null
  rm -f "$p"
done

# 7. Network leftovers: the CNI bridge (veths vanish with their netns), libcni's result cache
#    and the host address on lo.
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  log "deleting CNI bridge $CNI_BRIDGE"
  ip link delete "$CNI_BRIDGE" 2>/dev/null || log "WARNING: could not delete $CNI_BRIDGE"
fi
rm -f /var/lib/cni/results/zastava-e2e-* 2>/dev/null
if ip -4 addr show dev lo | grep -qF "inet $HOST_ADDR/"; then
  ip addr del "$HOST_ADDR/32" dev lo 2>/dev/null || log "WARNING: could not remove $HOST_ADDR from lo"
fi
for id in "${CONTAINER_IDS[@]}"; do rm -f /var/lib/cni/results/cni-loopback-"$id"-* 2>/dev/null; done

# 8. The state dir itself.
if [[ -d $STATE ]]; then
  rm -rf "$STATE" 2>/dev/null || {
    unmount_under "$STATE"
    rm -rf "$STATE" || log "WARNING: could not remove all of $STATE"
  }
fi
log "cluster down; state dir $STATE removed (cache $ZASTAVA_CACHE kept)"
exit 0
