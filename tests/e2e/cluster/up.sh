#!/usr/bin/env bash
# Starts the Zastava single-node e2e cluster (idempotent):
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (CRI),
#   kubelet (node "node1"), kube-proxy (Services route, pods reach the API through the
#   `kubernetes` Service), and a plain-HTTP OCI registry on $HOST_ADDR:5000 holding the test
#   image $HOST_ADDR:5000/zastava/busybox:1.36 (built here from busybox-static).
# Writes $ZASTAVA_E2E_STATE/kubeconfig and $ZASTAVA_E2E_STATE/env.
# If everything is already up and healthy it only prints so and exits 0.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

T0=$SECONDS
trap 'log "up.sh FAILED at line $LINENO: $BASH_COMMAND"' ERR
[[ $(id -u) -eq 0 ]] || die "up.sh must run as root"

bash "$HERE/install.sh"

export PATH=$K8S_BIN:$PATH
COSIGN_BIN=$TOOLS_DIR/cosign-$COSIGN_VERSION/bin/cosign
ORAS_BIN=$TOOLS_DIR/oras-$ORAS_VERSION/bin/oras
KUBECTL=$K8S_BIN/kubectl
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy registry)

# ------------------------------------------------------------------ helpers
pid_of() { # name -> prints pid if the recorded process is alive
  local f=$PID_DIR/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -d /proc/$pid ]] || return 1
  # Guard against pid reuse: the process must still mention our state dir.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE" || return 1
  printf '%s\n' "$pid"
}
alive() { pid_of "$1" >/dev/null; }

fail_daemon() { # name message
  log "ERROR: $1: $2"
  log "---- last 40 lines of $LOG_DIR/$1.log ----"
  tail -n 40 "$LOG_DIR/$1.log" >&2 || true
  exit 1
}

# TCP ports each daemon listens on (checked free before starting it).
declare -A PORTS=(
  [etcd]="2379 2380" [registry]="5000" [containerd]="" [kube-apiserver]="6443"
  [kube-controller-manager]="10257" [kube-scheduler]="10259" [kubelet]="10250 10248"
  [kube-proxy]="10256"
)
port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

start_daemon() { # name cmd...
  local name=$1 port
  shift
  if alive "$name"; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  for port in ${PORTS[$name]}; do
    if port_in_use "$port"; then
      die "cannot start $name: TCP port $port is already in use by another process (ss -ltnp 'sport = :$port')"
    fi
  done
  log "starting $name"
  # setsid: own session, so the daemon outlives this script and its terminal.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo "$!" >"$PID_DIR/$name.pid"
}

wait_for() { # name timeout-seconds description cmd...
  local name=$1 timeout=$2 what=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail_daemon "$name" "process exited while waiting for: $what"
    ((SECONDS < deadline)) || fail_daemon "$name" "timed out after ${timeout}s waiting for: $what"
    sleep 0.3
  done
  log "$name: $what"
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

node_ready() {
  [[ $(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
registry_has() { # REF
  local ref=$1 path=${1#*/}
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY_ADDR/v2/${path%:*}/manifests/${ref##*:}"
}
registry_has_test_image() { registry_has "$TEST_IMAGE" && registry_has "$DYN_IMAGE"; }
apiserver_ready() { curl -fsS --cacert "$PKI_DIR/ca.crt" "$APISERVER_URL/readyz"; }

cluster_healthy() {
  local d
  for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
  [[ -s $ENV_FILE && -s $KUBECONFIG_FILE ]] || return 1
  grep -q ZASTAVA_DYN_IMAGE_DIGEST "$ENV_FILE" || return 1
  apiserver_ready >/dev/null 2>&1 && node_ready && registry_has_test_image
}

if cluster_healthy; then
  log "cluster already up and healthy (state: $STATE); env: $ENV_FILE"
  log "up.sh done in $((SECONDS - T0)) s"
  exit 0
fi

mkdir -p "$LOG_DIR" "$PID_DIR" "$PKI_DIR" "$STATE/etcd" "$CONTAINERD_ROOT" "$CONTAINERD_STATE" \
  "$CNI_CONF_DIR" "$STATE/cni/ipam" "$KUBELET_ROOT" "$REGISTRY_DATA" "$STATE/config"
chmod 0700 "$PKI_DIR"

# ------------------------------------------------------------ host address
# $HOST_ADDR on the loopback interface (this sandbox has no dummy interfaces): the registry
# listens there and the apiserver advertises it as the `kubernetes` Service's endpoint; pods
# reach it through the bridge's gateway, as a local address of the host.
if ! ip -4 addr show dev lo | grep -qF "inet $HOST_ADDR/"; then
  ip addr add "$HOST_ADDR/32" dev lo || die "cannot put $HOST_ADDR on lo"
fi

# --------------------------------------------------------------------- PKI
# Generated once per state dir: cluster CA, apiserver serving cert, apiserver->kubelet
# client cert, service-account key pair, static tokens.
gen_cert() { # name subject ext-lines
  local name=$1 subj=$2 ext=$3
  [[ -s $PKI_DIR/$name.crt ]] && return 0
  openssl genrsa -out "$PKI_DIR/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" -out "$PKI_DIR/$name.csr"
  printf '%s\n' "$ext" >"$PKI_DIR/$name.ext"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI_DIR/$name.ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}
# A serving certificate from before the host address existed is made again.
if [[ -s $PKI_DIR/apiserver.crt ]] && ! openssl x509 -in "$PKI_DIR/apiserver.crt" -noout -text |
  grep -qF "IP Address:$HOST_ADDR"; then
  rm -f "$PKI_DIR/apiserver.crt" "$PKI_DIR/apiserver.key"
fi
if [[ ! -s $PKI_DIR/ca.crt ]]; then
  log "generating PKI in $PKI_DIR"
  openssl genrsa -out "$PKI_DIR/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/ca.key" -subj "/CN=zastava-e2e-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI_DIR/ca.crt"
fi
gen_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$HOST_ADDR,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
gen_cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
# The apiserver's client certificate for admission webhooks, from a CA of its own that signs
# nothing else (a webhook trusting it trusts only the apiserver): given to every webhook by
# the admission configuration below; the in-cluster tests install Zastava requiring it.
if [[ ! -s $PKI_DIR/webhook-client-ca.crt ]]; then
  openssl genrsa -out "$PKI_DIR/webhook-client-ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/webhook-client-ca.key" -subj "/CN=zastava-e2e-webhook-client-ca" \
    -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI_DIR/webhook-client-ca.crt"
fi
# Its key: ECDSA P-256 unless ZASTAVA_E2E_WEBHOOK_CLIENT_KEY=rsa-2048 (the key type kubeadm
# gives cluster certificates by default). The apiserver signs every new connection's handshake
# with it: make bench-admission measured a handshake at ~1.9 ms of the apiserver's CPU with
# RSA-2048 and ~0.7 ms with ECDSA (Go 1.15), and a closed loop of 100 creators opens a new
# connection for 4 reviews in 10. Read when the apiserver starts: make cluster-down to change
# it.
WEBHOOK_CLIENT_KEY=${ZASTAVA_E2E_WEBHOOK_CLIENT_KEY:-ecdsa-p256}
WEBHOOK_CLIENT=$PKI_DIR/apiserver-webhook-client-$WEBHOOK_CLIENT_KEY
if [[ ! -s $WEBHOOK_CLIENT.crt ]]; then
  case $WEBHOOK_CLIENT_KEY in
  ecdsa-p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WEBHOOK_CLIENT.key" ;;
  rsa-2048) openssl genrsa -out "$WEBHOOK_CLIENT.key" 2048 2>/dev/null ;;
  *) die "ZASTAVA_E2E_WEBHOOK_CLIENT_KEY is ecdsa-p256 or rsa-2048, not '$WEBHOOK_CLIENT_KEY'" ;;
  esac
  openssl req -new -key "$WEBHOOK_CLIENT.key" -subj "/CN=kube-apiserver-webhook-client" -out "$WEBHOOK_CLIENT.csr"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
    >"$WEBHOOK_CLIENT.ext"
  openssl x509 -req -in "$WEBHOOK_CLIENT.csr" -CA "$PKI_DIR/webhook-client-ca.crt" \
    -CAkey "$PKI_DIR/webhook-client-ca.key" -CAcreateserial -days 3650 -sha256 \
    -extfile "$WEBHOOK_CLIENT.ext" -out "$WEBHOOK_CLIENT.crt" 2>/dev/null
  rm -f "$WEBHOOK_CLIENT.csr" "$WEBHOOK_CLIENT.ext"
fi
cat >"$STATE/config/admission-kubeconfig.yaml" <<EOF
# The credentials the apiserver presents to admission webhooks; '*' matches every webhook.
apiVersion: v1
kind: Config
users:
- name: '*'
  user:
    client-certificate: $WEBHOOK_CLIENT.crt
    client-key: $WEBHOOK_CLIENT.key
EOF
cat >"$STATE/config/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $STATE/config/admission-kubeconfig.yaml
EOF
if [[ ! -s $PKI_DIR/sa.key ]]; then
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
fi
if [[ ! -s $PKI_DIR/tokens.csv ]]; then
  # Every component authenticates with a static token; all are in system:masters
  # (the controller-manager then needs no --use-service-account-credentials).
  {
    echo "$(openssl rand -hex 24),admin,uid-admin,\"system:masters\""
    echo "$(openssl rand -hex 24),system:kube-controller-manager,uid-kcm,\"system:masters\""
    echo "$(openssl rand -hex 24),system:kube-scheduler,uid-scheduler,\"system:masters\""
    echo "$(openssl rand -hex 24),system:node:$NODE_NAME,uid-node,\"system:masters,system:nodes\""
  } >"$PKI_DIR/tokens.csv"
fi
grep -q ',system:kube-proxy,' "$PKI_DIR/tokens.csv" ||
  echo "$(openssl rand -hex 24),system:kube-proxy,uid-kube-proxy,\"system:node-proxier\"" >>"$PKI_DIR/tokens.csv"
token_for() { awk -F, -v u="$1" '$2 == u { print $1 }' "$PKI_DIR/tokens.csv"; }

write_kubeconfig() { # file user
  local file=$1 user=$2 token ca
  token=$(token_for "$user")
  ca=$(base64 -w0 <"$PKI_DIR/ca.crt")
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: zastava-e2e
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: zastava-e2e
  context:
    cluster: zastava-e2e
    user: $user
    namespace: default
current-context: zastava-e2e
EOF
  chmod 0600 "$file.tmp"
  mv "$file.tmp" "$file"
}
write_kubeconfig "$KUBECONFIG_FILE" admin
write_kubeconfig "$STATE/config/kube-controller-manager.kubeconfig" system:kube-controller-manager
write_kubeconfig "$STATE/config/kube-scheduler.kubeconfig" system:kube-scheduler
write_kubeconfig "$STATE/config/kubelet.kubeconfig" "system:node:$NODE_NAME"
write_kubeconfig "$STATE/config/kube-proxy.kubeconfig" system:kube-proxy

# -------------------------------------------------------------------- etcd
start_daemon etcd etcd --name zastava-e2e --data-dir "$STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster zastava-e2e=http://127.0.0.1:2380 \
  --quota-backend-bytes 2147483648 --logger zap --log-outputs stderr

# --------------------------------------------------------------- registry
cat >"$STATE/config/registry.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
start_daemon registry docker-registry serve "$STATE/config/registry.yml"

# -------------------------------------------------------------- containerd
cat >"$CNI_CONF_DIR/10-zastava.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "zastava-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_SUBNET" }]]
      }
    }
  ]
}
EOF
# Pods reach the host through the bridge gateway (first address of $POD_SUBNET).
sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || log "WARNING: could not set net.ipv4.ip_forward=1"

cat >"$STATE/config/containerd.toml" <<EOF
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
# Leave containerd's own oom_score_adj alone: no CAP_SYS_RESOURCE here.
oom_score = 0

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:5000"]
        endpoint = ["http://$REGISTRY_ADDR"]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:5000"]
        endpoint = ["http://$REGISTRY_ADDR"]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REGISTRY_ADDR"]
        endpoint = ["http://$REGISTRY_ADDR"]
EOF
start_daemon containerd containerd --config "$STATE/config/containerd.toml"

# ---------------------------------------------------------- kube-apiserver
wait_for etcd 30 "healthy on 127.0.0.1:2379" curl -fsS http://127.0.0.1:2379/health
# The ServiceAccount admission plugin stays ENABLED: the controller-manager runs the
# serviceaccount and token controllers (--service-account-private-key-file, --root-ca-file),
# so every namespace gets its "default" ServiceAccount and pods get tokens. A pod created in
# a brand-new namespace can be refused for ~1 s until that ServiceAccount exists.
# The endpoint reconciler publishes $HOST_ADDR:6443 as the `kubernetes` Service's endpoint
# (pods reach the API through kube-proxy); it listens on every address for that.
start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --secure-port 6443 --bind-address 0.0.0.0 --advertise-address "$HOST_ADDR" \
  --cert-dir "$STATE/apiserver-certs" \
  --tls-cert-file "$PKI_DIR/apiserver.crt" --tls-private-key-file "$PKI_DIR/apiserver.key" \
  --client-ca-file "$PKI_DIR/ca.crt" \
  --token-auth-file "$PKI_DIR/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI_DIR/sa.pub" \
  --service-account-signing-key-file "$PKI_DIR/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --allow-privileged=true \
  --kubelet-client-certificate "$PKI_DIR/kubelet-client.crt" \
  --kubelet-client-key "$PKI_DIR/kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --admission-control-config-file "$STATE/config/admission.yaml" \
  --profiling=false \
  --v 1

# ---------------------------------------------------------- pod images
# One OCI image layout from bookworm's busybox-static, cached by content:
#   - the pod sandbox image (Cmd /bin/sleep inf), imported into containerd;
#   - the test image (Cmd /bin/sh), pushed to the local registry.
BUSYBOX=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)
[[ -x $BUSYBOX ]] || die "busybox-static's /bin/busybox not found"
BB_SUM=$(sha256sum "$BUSYBOX" | cut -d' ' -f1)
BB_CREATED=$(date -u -d "@$(stat -c %Y "$BUSYBOX")" +%Y-%m-%dT%H:%M:%SZ)

# build_image NAME CMD_JSON REF [SRC=DEST...] -> prints the layout dir (cached by content).
# Each SRC=DEST copies a host file into the image (DEST an absolute path in it).
build_image() {
  local name=$1 cmd=$2 ref=$3 key dir extra
  shift 3
  key=$( {
    printf '%s\n' "$BB_SUM" "$cmd" "$ref" "layout-v1"
    for extra in "$@"; do printf '%s %s\n' "$extra" "$(sha256sum <"${extra%%=*}")"; done
  } | sha256sum | cut -c1-16)
  dir=$IMAGES_DIR/$name-$key
  if [[ -s $dir/layout/index.json && -s $dir/image.tar ]]; then
    printf '%s\n' "$dir"
    return 0
  fi
  log "building OCI image $ref in $dir"
  rm -rf "$dir" && mkdir -p "$dir/rootfs/bin" "$dir/layout/blobs/sha256"
  local r=$dir/rootfs applet
  cp "$BUSYBOX" "$r/bin/busybox"
  chmod 0755 "$r/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$r/bin/$applet"
  done
  mkdir -p "$r/etc" "$r/tmp" "$r/root" "$r/proc" "$r/sys" "$r/dev" "$r/var/run" "$r/home"
  mkdir -p "$r/usr" && ln -s ../bin "$r/usr/bin" && ln -s bin "$r/sbin" && ln -s ../bin "$r/usr/sbin"
  chmod 1777 "$r/tmp"
  for extra in "$@"; do
    install -D -m 0755 "${extra%%=*}" "$r/${extra#*=}"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
  : >"$r/etc/hostname"
  : >"$r/etc/hosts"
  : >"$r/etc/resolv.conf"

  local blobs=$dir/layout/blobs/sha256
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$BB_CREATED" \
    -C "$r" -cf "$dir/layer.tar" .
  local diff_id layer_digest layer_size
  diff_id=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  gzip -n -9 -c "$dir/layer.tar" >"$dir/layer.tar.gz"
  layer_digest=$(sha256sum "$dir/layer.tar.gz" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$dir/layer.tar.gz")
  mv "$dir/layer.tar.gz" "$blobs/$layer_digest"
  rm -f "$dir/layer.tar"

  jq -cn --arg created "$BB_CREATED" --argjson cmd "$cmd" --arg diff "sha256:$diff_id" '{
      created: $created, architecture: "amd64", os: "linux",
      config: {
        Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        Cmd: $cmd, WorkingDir: "/"
      },
      rootfs: { type: "layers", diff_ids: [$diff] },
      history: [{ created: $created, created_by: "zastava e2e: rootfs from Debian busybox-static" }]
    }' >"$dir/config.json"
  local cfg_digest cfg_size
  cfg_digest=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  cfg_size=$(stat -c %s "$dir/config.json")
  mv "$dir/config.json" "$blobs/$cfg_digest"

  jq -cn --arg cd "sha256:$cfg_digest" --argjson cs "$cfg_size" \
    --arg ld "sha256:$layer_digest" --argjson ls "$layer_size" '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls }]
    }' >"$dir/manifest.json"
  local m_digest m_size
  m_digest=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)
  m_size=$(stat -c %s "$dir/manifest.json")
  mv "$dir/manifest.json" "$blobs/$m_digest"

  jq -cn --arg md "sha256:$m_digest" --argjson ms "$m_size" --arg ref "$ref" \
    --arg tag "${ref##*:}" '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
        platform: { architecture: "amd64", os: "linux" },
        annotations: { "io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag }
      }]
    }' >"$dir/layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/layout/oci-layout"
  printf 'sha256:%s\n' "$m_digest" >"$dir/digest"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$BB_CREATED" \
    -C "$dir/layout" -cf "$dir/image.tar" .
  rm -rf "$dir/rootfs"
  printf '%s\n' "$dir"
}
mkdir -p "$IMAGES_DIR"
SANDBOX_DIR=$(build_image pause '["/bin/sleep","inf"]' "$SANDBOX_IMAGE")
TEST_DIR=$(build_image busybox '["/bin/sh"]' "$TEST_IMAGE")
TEST_DIGEST=$(<"$TEST_DIR/digest")
# A dynamically linked program with the libraries it loads, for the observer's tests:
# the machine's coreutils `sleep` at /opt/dyn/bin/sleep, its libraries at their own paths.
SLEEP=$(command -v sleep)
DYN_FILES=("$SLEEP=/opt/dyn/bin/sleep")
while read -r lib; do
  DYN_FILES+=("$lib=$lib")
done < <(ldd "$SLEEP" | awk '$1 ~ /^\// { print $1 } $2 == "=>" && $3 ~ /^\// { print $3 }')
((${#DYN_FILES[@]} > 1)) || die "ldd found no libraries of $SLEEP"
DYN_DIR=$(build_image dynamic '["/opt/dyn/bin/sleep","inf"]' "$DYN_IMAGE" "${DYN_FILES[@]}")
DYN_DIGEST=$(<"$DYN_DIR/digest")

# ------------------------------------------------- containerd: sandbox image
CTR=(ctr --address "$CONTAINERD_SOCK" --namespace k8s.io)
wait_for containerd 30 "CRI socket $CONTAINERD_SOCK ready" "${CTR[@]}" version
if ! "${CTR[@]}" images ls -q | grep -qxF "$SANDBOX_IMAGE"; then
  "${CTR[@]}" images import --snapshotter native "$SANDBOX_DIR/image.tar" >/dev/null ||
    die "ctr images import of the sandbox image failed"
fi
"${CTR[@]}" images ls -q | grep -qxF "$SANDBOX_IMAGE" || die "sandbox image $SANDBOX_IMAGE not in containerd after import"
log "containerd: sandbox image $SANDBOX_IMAGE present"

# --------------------------------------------- registry: push the test image
wait_for registry 30 "serving on http://$REGISTRY_ADDR/v2/" curl -fsS "http://$REGISTRY_ADDR/v2/"
push_image() { # LAYOUT_DIR REF
  registry_has "$2" 2>/dev/null && return 0
  "$ORAS_BIN" cp --from-oci-layout "$1/layout:${2##*:}" --to-plain-http "$2" \
    >"$LOG_DIR/oras-push.log" 2>&1 || { tail -n 40 "$LOG_DIR/oras-push.log" >&2; die "pushing $2 failed"; }
  registry_has "$2" || die "$2 not in the registry after the push"
}
push_image "$TEST_DIR" "$TEST_IMAGE"
push_image "$DYN_DIR" "$DYN_IMAGE"
log "registry: $TEST_IMAGE@$TEST_DIGEST, $DYN_IMAGE@$DYN_DIGEST"

# -------------------------------------------------------------- apiserver up
wait_for kube-apiserver 90 "ready on $APISERVER_URL" apiserver_ready

# ---------------------------------------------- controller-manager, scheduler
start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$STATE/config/kube-controller-manager.kubeconfig" \
  --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 10257 --port 0 \
  --cert-dir "$STATE/kcm-certs" \
  --service-account-private-key-file "$PKI_DIR/sa.key" \
  --root-ca-file "$PKI_DIR/ca.crt" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --controllers '*,-csrsigning,-csrapproving,-nodeipam,-cloud-node-lifecycle' \
  --node-monitor-grace-period 40s \
  --profiling=false \
  --v 1
start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$STATE/config/kube-scheduler.kubeconfig" \
  --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 10259 --port 0 \
  --cert-dir "$STATE/scheduler-certs" \
  --profiling=false \
  --v 1

# ------------------------------------------------------------------ kubelet
cat >"$STATE/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# Only clients with a certificate from our CA (the apiserver's kubelet-client cert, used for
# exec/logs/port-forward) may use the kubelet API; it listens on all addresses because the
# apiserver reaches it through the node's InternalIP.
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $PKI_DIR/ca.crt
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
volumePluginDir: $KUBELET_ROOT/volume-plugins
EOF
start_daemon kubelet "$K8S_BIN/kubelet" \
  --config "$STATE/config/kubelet.yaml" \
  --kubeconfig "$STATE/config/kubelet.kubeconfig" \
  --root-dir "$KUBELET_ROOT" \
  --cert-dir "$KUBELET_ROOT/pki" \
  --container-runtime remote \
  --container-runtime-endpoint "unix://$CONTAINERD_SOCK" \
  --runtime-request-timeout 10m \
  --pod-infra-container-image "$SANDBOX_IMAGE" \
  --hostname-override "$NODE_NAME" \
  --v 1

# ---------------------------------------------------------------- kube-proxy
# iptables mode. --masquerade-all: a pod calling a Service whose endpoint is a pod on the same
# bridge gets its answer back through the host (no br_netfilter here). The conntrack sysctls
# are left as the host has them (not writable in this sandbox). kube-proxy exits when its
# config file changes: it is replaced only when its content differs.
cat >"$STATE/config/kube-proxy.yaml.new" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/config/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_SUBNET
mode: iptables
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
if cmp -s "$STATE/config/kube-proxy.yaml.new" "$STATE/config/kube-proxy.yaml"; then
  rm -f "$STATE/config/kube-proxy.yaml.new"
else
  mv "$STATE/config/kube-proxy.yaml.new" "$STATE/config/kube-proxy.yaml"
fi
start_daemon kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/config/kube-proxy.yaml" --v 1

wait_for kube-controller-manager 60 "healthy" curl -fsSk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 60 "healthy" curl -fsSk https://127.0.0.1:10259/healthz
wait_for kubelet 60 "healthz ok" curl -fsS http://127.0.0.1:10248/healthz
wait_for kubelet 90 "node $NODE_NAME Ready" node_ready
wait_for kube-proxy 60 "healthz ok" curl -fsS http://127.0.0.1:10256/healthz
wait_for kube-controller-manager 60 "default ServiceAccount in namespace default" \
  kc -n default get serviceaccount default

# --------------------------------------------------------------- env file
cat >"$ENV_FILE.tmp" <<EOF
# Generated by tests/e2e/cluster/up.sh; source it: . $ENV_FILE
export ZASTAVA_E2E_STATE="$STATE"
export KUBECONFIG="$KUBECONFIG_FILE"
export ZASTAVA_REGISTRY="$REGISTRY_ADDR"
export ZASTAVA_HOST_ADDR="$HOST_ADDR"
export ZASTAVA_HELM_PYTHON="$HELM_PY_DIR/bin/python"
export ZASTAVA_TEST_IMAGE="$TEST_IMAGE"
export ZASTAVA_TEST_IMAGE_DIGEST="$TEST_DIGEST"
export ZASTAVA_DYN_IMAGE="$DYN_IMAGE"
export ZASTAVA_DYN_IMAGE_DIGEST="$DYN_DIGEST"
export ZASTAVA_NODE="$NODE_NAME"
export ZASTAVA_APISERVER="$APISERVER_URL"
export ZASTAVA_CA_FILE="$PKI_DIR/ca.crt"
export ZASTAVA_WEBHOOK_CLIENT_CA="$PKI_DIR/webhook-client-ca.crt"
export ZASTAVA_WEBHOOK_CLIENT_KEY="$WEBHOOK_CLIENT_KEY"
export KUBECTL="$KUBECTL"
export COSIGN="$COSIGN_BIN"
export ORAS="$ORAS_BIN"
export CONTAINERD_SOCK="$CONTAINERD_SOCK"
export CONTAINERD_ADDRESS="$CONTAINERD_SOCK"
export CONTAINERD_NAMESPACE="k8s.io"
export PATH="$K8S_BIN:${COSIGN_BIN%/*}:${ORAS_BIN%/*}:\$PATH"
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"

log "cluster up: node $NODE_NAME Ready, registry $REGISTRY_ADDR, kubeconfig $KUBECONFIG_FILE"
log "env file: $ENV_FILE   (. $ENV_FILE)"
log "up.sh done in $((SECONDS - T0)) s"
