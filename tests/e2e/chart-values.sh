#!/usr/bin/env bash
# Prints (JSON, which Helm reads as YAML) the chart values for the local cluster: the images
# images/make.sh published (by digest, from its images.env), plain HTTP to the local registry,
# the observer pointed at this node's containerd, and the webhook requiring the apiserver's
# client certificate (up.sh gives the apiserver one from a CA of its own). Used by `make demo`
# and the in-cluster tests.
#   tests/e2e/chart-values.sh IMAGES_ENV
set -euo pipefail
images_env=${1:?usage: chart-values.sh IMAGES_ENV}
: "${ZASTAVA_REGISTRY:?source the cluster env file first}" "${CONTAINERD_SOCK:?}" "${ZASTAVA_E2E_STATE:?}"
: "${ZASTAVA_WEBHOOK_CLIENT_CA:?the cluster predates the webhook client certificate of the apiserver; make cluster-down, then up again}"
# shellcheck disable=SC1090
. "$images_env"
digest() { printf '%s' "${1#*@}"; }
jq -n --arg registry "$ZASTAVA_REGISTRY" \
  --arg operator "$(digest "$ZASTAVA_OPERATOR_IMAGE")" \
  --arg webhook "$(digest "$ZASTAVA_WEBHOOK_IMAGE")" \
  --arg observer "$(digest "$ZASTAVA_OBSERVER_IMAGE")" \
  --arg socket "$CONTAINERD_SOCK" --arg state "$ZASTAVA_E2E_STATE/containerd/root" \
  --rawfile clientca "$ZASTAVA_WEBHOOK_CLIENT_CA" '{
    image: {registry: $registry},
    registries: {insecure: [$registry]},
    operator: {image: {digest: $operator}},
    webhook: {image: {digest: $webhook}, clientAuth: {caBundle: $clientca}},
    observer: {image: {digest: $observer}, criSocket: $socket, runtimeStateDir: $state}
  }'
