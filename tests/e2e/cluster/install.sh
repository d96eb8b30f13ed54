#!/usr/bin/env bash
# Installs everything the Zastava e2e cluster needs, idempotently.
#  - Debian (bookworm) packages via apt, only when missing.
#  - Go 1.15 from bullseye, Kubernetes v1.20.2 built from bookworm's source package,
#    cosign and oras from trixie: all fetched through a private apt sources list
#    (the machine's own apt setup is not touched) and cached under $ZASTAVA_CACHE.
# A second run with a warm cache does no network access and takes seconds.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

STEP="init"
on_exit() {
  local rc=$?
  if ((rc != 0)); then log "install.sh FAILED during step: $STEP (exit $rc)"; fi
}
trap on_exit EXIT

[[ $(id -u) -eq 0 ]] || die "install.sh must run as root"
mkdir -p "$ZASTAVA_CACHE" "$DEBS_DIR" "$TOOLS_DIR"

# ---------------------------------------------------------------- apt packages
STEP="apt packages"
APT_PACKAGES=(
  etcd-server containerd runc containernetworking-plugins docker-registry
  busybox-static rsync openssl iproute2 iptables conntrack ebtables socat ethtool util-linux
  build-essential jq curl binutils ca-certificates xz-utils dpkg-dev lua5.4
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
    missing+=("$p")
  fi
done
if (( ${#missing[@]} > 0 )); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The packaged daemons are not wanted as system services: up.sh runs its own.
  for svc in containerd docker-registry etcd; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
      systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
  done
else
  log "Debian packages: all present"
fi
# kubectl 1.20 comes from bookworm's kubernetes-client, unpacked into the cache rather than
# installed: machines often carry another package owning /usr/bin/kubectl (e.g. the Google
# Cloud SDK one), and the cluster must use a client matching the 1.20 server anyway.
STEP="kubectl (kubernetes-client)"
if [[ ! -x $K8S_BIN/kubectl ]]; then
  dest=$DEBS_DIR/kubernetes-client
  mkdir -p "$dest"
  if ! compgen -G "$dest/*.deb" >/dev/null; then
    log "apt-get download kubernetes-client"
    (cd "$dest" && { apt-get -o APT::Sandbox::User=root download "kubernetes-client=$K8S_DEB_VERSION" ||
      { apt-get update -q && apt-get -o APT::Sandbox::User=root download kubernetes-client; }; })
  fi
  rm -rf "$K8S_DIR/kubectl-root" && mkdir -p "$K8S_DIR/kubectl-root" "$K8S_BIN"
  dpkg -x "$(compgen -G "$dest/*.deb" | head -n1)" "$K8S_DIR/kubectl-root"
  install -m 0755 "$K8S_DIR/kubectl-root/usr/bin/kubectl" "$K8S_BIN/kubectl"
  rm -rf "$K8S_DIR/kubectl-root"
fi
log "kubectl: $("$K8S_BIN/kubectl" version --client --short 2>/dev/null || true)"

# ------------------------------------------------------- private apt sources
# bullseye (Go 1.15), trixie (cosign, oras), bookworm deb-src (kubernetes source).
PRIV_LIST=$APT_DIR/sources.list
APT_OPTS=()
private_apt_setup() {
  local mirror
  mirror=$(debian_mirror)
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$PRIV_LIST.new" <<EOL
deb [signed-by=$keyring] $mirror bullseye main
deb [signed-by=$keyring] $mirror trixie main
deb-src [signed-by=$keyring] $mirror bookworm main
EOL
  mv "$PRIV_LIST.new" "$PRIV_LIST"
  APT_OPTS=(
    -o "Dir::Etc::sourcelist=$PRIV_LIST" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
    -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
  )
}
PRIV_UPDATED=0
private_apt_update() {
  (( PRIV_UPDATED )) && return 0
  private_apt_setup
  log "apt-get update (private list: bullseye, trixie, bookworm deb-src)"
  apt-get "${APT_OPTS[@]}" update -q
  PRIV_UPDATED=1
}

# Download a binary package from the private list into $DEBS_DIR/NAME/.
fetch_deb() { # name[/suite] destdir
  local spec=$1 dest=$2
  mkdir -p "$dest"
  if compgen -G "$dest/*.deb" >/dev/null; then return 0; fi
  private_apt_update
  log "apt-get download $spec"
  (cd "$dest" && apt-get "${APT_OPTS[@]}" download "$spec")
}

# --------------------------------------------------------------------- Go 1.15
STEP="Go $GO_VERSION"
if [[ ! -x $GOROOT_DIR/bin/go ]]; then
  fetch_deb "golang-$GO_VERSION-go/bullseye" "$DEBS_DIR/golang-$GO_VERSION-go"
  fetch_deb "golang-$GO_VERSION-src/bullseye" "$DEBS_DIR/golang-$GO_VERSION-src"
  rm -rf "$GO_DIR.tmp" && mkdir -p "$GO_DIR.tmp/root"
  for deb in "$DEBS_DIR"/golang-"$GO_VERSION"-{go,src}/*.deb; do
    log "unpacking $(basename "$deb")"
    dpkg -x "$deb" "$GO_DIR.tmp/root"
  done
  rm -rf "$GO_DIR" && mv "$GO_DIR.tmp" "$GO_DIR"
  "$GOROOT_DIR/bin/go" version >/dev/null || die "the unpacked Go toolchain does not run"
fi
log "Go: $("$GOROOT_DIR/bin/go" version)"

# ----------------------------------------------------------- Kubernetes v1.20
STEP="Kubernetes $K8S_VERSION build"
K8S_TARGETS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)
k8s_complete() {
  local b
  for b in "${K8S_TARGETS[@]}"; do [[ -x $K8S_BIN/$b ]] || return 1; done
}
if ! k8s_complete; then
  SRC_DL=$DEBS_DIR/kubernetes-src
  mkdir -p "$SRC_DL"
  if ! compgen -G "$SRC_DL/kubernetes_*.orig.tar.*" >/dev/null; then
    private_apt_update
    log "apt-get source --download-only kubernetes=$K8S_DEB_VERSION"
    if ! (cd "$SRC_DL" && apt-get "${APT_OPTS[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION"); then
      log "WARNING: kubernetes=$K8S_DEB_VERSION is not available; taking bookworm's current kubernetes source"
      (cd "$SRC_DL" && apt-get "${APT_OPTS[@]}" source --download-only kubernetes/bookworm)
    fi
  fi
  orig=$(compgen -G "$SRC_DL/kubernetes_*.orig.tar.*" | head -n1)
  BUILD_DIR=$ZASTAVA_CACHE/build/kubernetes
  rm -rf "$BUILD_DIR" && mkdir -p "$BUILD_DIR"
  log "unpacking $(basename "$orig")"
  tar -xf "$orig" -C "$BUILD_DIR" --strip-components=1
  [[ -f $BUILD_DIR/Makefile && -d $BUILD_DIR/vendor ]] || die "unexpected source layout in $orig"
  # No .git in the tarball: give the build an explicit version.
  cat >"$BUILD_DIR/.zastava-version" <<EOL
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='v$K8S_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOL
  what=""
  for b in "${K8S_TARGETS[@]}"; do what+="cmd/$b "; done
  log "building Kubernetes v$K8S_VERSION (${K8S_TARGETS[*]}) with Go $GO_VERSION; this takes ~8 minutes on 2 cores"
  start=$SECONDS
  (
    cd "$BUILD_DIR"
    export GOROOT=$GOROOT_DIR
    export PATH=$GOROOT/bin:$PATH
    export GOCACHE=$ZASTAVA_CACHE/gocache GOPATH=$ZASTAVA_CACHE/gopath
    export GOFLAGS=-mod=vendor GO111MODULE=on GOPROXY=off GOTOOLCHAIN=local
    export KUBE_GIT_VERSION_FILE=$BUILD_DIR/.zastava-version
    export KUBE_BUILD_PLATFORMS=linux/amd64
    make WHAT="${what% }" GOLDFLAGS="-s -w"
  )
  mkdir -p "$K8S_BIN"
  for b in "${K8S_TARGETS[@]}"; do
    f=$(find "$BUILD_DIR/_output" -type f -name "$b" -perm -u+x | head -n1)
    [[ -n $f ]] || die "build produced no $b"
    install -m 0755 "$f" "$K8S_BIN/$b.tmp" && mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
  done
  log "Kubernetes built in $((SECONDS - start)) s; removing the source tree"
  rm -rf "$BUILD_DIR"
fi
log "Kubernetes: $("$K8S_BIN/kube-apiserver" --version)"

# ------------------------------------------------------------ cosign and oras
install_tool() { # name version
  local name=$1 version=$2 dir=$TOOLS_DIR/$1-$2
  STEP="$name $version"
  if [[ ! -x $dir/bin/$name ]]; then
    local dest=$DEBS_DIR/$name-$version
    if ! compgen -G "$dest/*.deb" >/dev/null; then
      if ! fetch_deb "$name=$version" "$dest"; then
        log "WARNING: $name=$version is gone from trixie; taking trixie's current $name"
        fetch_deb "$name/trixie" "$dest"
      fi
    fi
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/root" "$dir.tmp/bin"
    dpkg -x "$(compgen -G "$dest/*.deb" | head -n1)" "$dir.tmp/root"
    ln -s "../root/usr/bin/$name" "$dir.tmp/bin/$name"
    "$dir.tmp/bin/$name" version >/dev/null 2>&1 || die "$name from trixie does not run"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  log "$name: $dir/bin/$name"
}
install_tool cosign "$COSIGN_VERSION"
install_tool oras "$ORAS_VERSION"

# ---------------------------------------------------- Helm (its Go SDK from PyPI)
STEP="helm-python-sdk $HELM_PY_VERSION"
if [[ ! -x $HELM_PY_DIR/bin/python ]] || ! "$HELM_PY_DIR/bin/python" -c 'import helm_python' 2>/dev/null; then
  log "installing helm-python-sdk $HELM_PY_VERSION into $HELM_PY_DIR"
  rm -rf "$HELM_PY_DIR.tmp"
  python3 -m venv "$HELM_PY_DIR.tmp"
  "$HELM_PY_DIR.tmp/bin/pip" install -q --disable-pip-version-check "helm-python-sdk==$HELM_PY_VERSION"
  "$HELM_PY_DIR.tmp/bin/python" -c 'import helm_python' || die "helm-python-sdk does not load"
  rm -rf "$HELM_PY_DIR" && mv "$HELM_PY_DIR.tmp" "$HELM_PY_DIR"
fi
log "helm SDK: $("$HELM_PY_DIR/bin/python" -c 'import helm_python as h; print(h.helm_sdk_version())')"

STEP="done"
log "install.sh: all components present"
