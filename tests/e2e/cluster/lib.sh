#!/usr/bin/env bash
# Shared settings for the Zastava single-node e2e cluster scripts.
# Sourced by install.sh, up.sh, down.sh and smoke.sh; defines variables and helpers only.

# shellcheck disable=SC2034  # variables are used by the scripts that source this file

ZASTAVA_CACHE=${ZASTAVA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zastava-e2e}
ZASTAVA_E2E_STATE=${ZASTAVA_E2E_STATE:-/tmp/zastava-e2e}

# Versions (the cache is keyed by these).
K8S_VERSION=1.20.2
K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
GO_VERSION=1.15
COSIGN_VERSION=2.5.0-2+b4
ORAS_VERSION=1.2.0-1+b9
BUSYBOX_IMAGE_TAG=1.36

# Cache layout.
K8S_DIR=$ZASTAVA_CACHE/k8s-$K8S_VERSION
K8S_BIN=$K8S_DIR/bin
GO_DIR=$ZASTAVA_CACHE/go-$GO_VERSION
GOROOT_DIR=$GO_DIR/root/usr/lib/go-$GO_VERSION
DEBS_DIR=$ZASTAVA_CACHE/debs
APT_DIR=$ZASTAVA_CACHE/apt
TOOLS_DIR=$ZASTAVA_CACHE/tools
# Helm v4's own Go SDK as a Python package (no helm binary in the reachable registries), in a
# virtualenv of its own; tests/e2e/helm.py is the command line over it.
HELM_PY_VERSION=0.2.2
HELM_PY_DIR=$TOOLS_DIR/helm-python-sdk-$HELM_PY_VERSION
IMAGES_DIR=$ZASTAVA_CACHE/images

# Runtime layout.
STATE=$ZASTAVA_E2E_STATE
LOG_DIR=$STATE/logs
PID_DIR=$STATE/pids
PKI_DIR=$STATE/pki
KUBECONFIG_FILE=$STATE/kubeconfig
ENV_FILE=$STATE/env
CONTAINERD_ROOT=$STATE/containerd/root
CONTAINERD_STATE=$STATE/containerd/state
CONTAINERD_SOCK=$STATE/containerd/containerd.sock
CNI_CONF_DIR=$STATE/cni/net.d
CNI_BRIDGE=zastava0
POD_SUBNET=10.88.0.0/16
SERVICE_CIDR=10.0.0.0/24
KUBELET_ROOT=$STATE/kubelet
# The host's address inside the cluster, on lo: host processes and pods (through the CNI
# bridge's gateway) reach the registry and the apiserver at the same address; a pod's
# 127.0.0.1 is its own loopback.
HOST_ADDR=10.87.0.1
REGISTRY_ADDR=$HOST_ADDR:5000
REGISTRY_DATA=$STATE/registry
NODE_NAME=node1
APISERVER_URL=https://127.0.0.1:6443
SANDBOX_IMAGE=zastava.local/pause:$BUSYBOX_IMAGE_TAG
TEST_IMAGE=$REGISTRY_ADDR/zastava/busybox:$BUSYBOX_IMAGE_TAG
DYN_IMAGE=$REGISTRY_ADDR/zastava/dynamic:$BUSYBOX_IMAGE_TAG

# Whether a cluster of ours answers already: scripts that bring it up tear down only what
# they started.
cluster_answers() {
  # shellcheck disable=SC1090
  [[ -s $ENV_FILE ]] && (. "$ENV_FILE" && kubectl get --raw /readyz) >/dev/null 2>&1
}

# RUSTFLAGS of the shipped binaries (images/make.sh): the checkout's and the crate registry's
# paths end up in the binaries (panic locations), mapped to fixed names so a build in another
# directory gives the same bytes. Anything built in the release profile next to them
# (make bench-admission) uses the same flags, so the dependencies are compiled once.
release_rustflags() {
  local registry_src=${CARGO_HOME:-$HOME/.cargo}/registry/src
  printf '%s' "${RUSTFLAGS:-} --remap-path-prefix=$PWD=/zastava --remap-path-prefix=$registry_src=/cargo"
}

log() { printf '[zastava-e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The machine's Debian mirror (main entry, not -security), read at run time.
debian_mirror() {
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '
      /^URIs:/ { u = $2 }
      /^Suites:/ { if ($0 !~ /-security/ && u != "" && !found) { print u; found = 1 } }
      /^$/ { u = "" }
    ' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {
        for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [[ -n $uri ]] || die "cannot find the Debian mirror URI in the apt configuration"
  printf '%s\n' "${uri%/}"
}
