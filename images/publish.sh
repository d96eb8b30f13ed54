#!/usr/bin/env bash
# Pushes the images images/build.py made to a registry by digest, signs each with cosign and
# attaches its CycloneDX SBOM as a referrer, so a cluster that demands both (Zastava's own
# baseline policy, for one) admits Zastava's images. Then packages charts/zastava and pushes
# it as an OCI artifact to REGISTRY/charts (signed too); OUT_DIR/chart.ref names it.
#
#   images/publish.sh OUT_DIR REGISTRY [--plain-http]
#
# COSIGN_KEY (default: a key pair made once under $ZASTAVA_CACHE/signing/, empty password)
# signs; its public key is written to OUT_DIR/cosign.pub. OUT_DIR/images.env gets one line
# per image, ZASTAVA_<COMPONENT>_IMAGE=REGISTRY/zastava/<component>@sha256:...
# Needs cosign and oras on PATH and ZASTAVA_HELM_PYTHON (tests/e2e/cluster/install.sh provides
# them; the cluster's env file names them).
set -euo pipefail

out=${1:?usage: publish.sh OUT_DIR REGISTRY [--plain-http]}
registry=${2:?usage: publish.sh OUT_DIR REGISTRY [--plain-http]}
plain_http=${3:-}
log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cache=${ZASTAVA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zastava-e2e}
export COSIGN_PASSWORD=${COSIGN_PASSWORD:-}
key=${COSIGN_KEY:-$cache/signing/cosign.key}
if [[ ! -s $key ]]; then
  [[ -z ${COSIGN_KEY:-} ]] || die "COSIGN_KEY=$COSIGN_KEY does not exist"
  log "making a cosign key pair in ${key%/*}"
  mkdir -p "${key%/*}"
  (cd "${key%/*}" && cosign generate-key-pair >/dev/null 2>&1)
fi
cosign public-key --key "$key" >"$out/cosign.pub"

oras_http=() cosign_http=()
if [[ $plain_http == --plain-http ]]; then
  oras_http=(--plain-http)
  cosign_http=(--allow-http-registry --allow-insecure-registry)
fi

sign() { # REF LOG
  # Signed once: a second signature of the same digest by the same key adds nothing.
  cosign verify --key "$out/cosign.pub" --insecure-ignore-tlog "${cosign_http[@]}" "$1" >/dev/null 2>&1 && return 0
  cosign sign --key "$key" --tlog-upload=false "${cosign_http[@]}" -y "$1" >"$2" 2>&1 ||
    { cat "$2" >&2; die "signing $1 failed"; }
}

: >"$out/images.env.tmp"
for component in operator webhook observer; do
  dir=$out/$component
  digest=$(<"$dir/digest")
  tag=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$dir/layout/index.json")
  repo=$registry/zastava/$component
  log "pushing $repo:$tag ($digest)"
  oras cp --from-oci-layout "$dir/layout:$tag" ${plain_http:+--to-plain-http} "$repo:$tag" >"$dir/push.log" 2>&1 ||
    { cat "$dir/push.log" >&2; die "pushing $repo failed"; }
  pushed=$(oras resolve "${oras_http[@]}" "$repo:$tag")
  [[ $pushed == "$digest" ]] || die "$repo:$tag resolves to $pushed, built $digest"
  ref=$repo@$digest
  sign "$ref" "$dir/sign.log"
  if [[ -z $(oras discover "${oras_http[@]}" --artifact-type application/vnd.cyclonedx+json --format json "$ref" |
    jq -r '(.manifests // .referrers // [])[].digest') ]]; then
    (cd "$dir" && oras attach "${oras_http[@]}" --artifact-type application/vnd.cyclonedx+json "$ref" \
      sbom.cdx.json:application/vnd.cyclonedx+json >attach.log 2>&1) ||
      { cat "$dir/attach.log" >&2; die "attaching the SBOM to $ref failed"; }
  fi
  log "$ref: signed, SBOM attached"
  printf 'ZASTAVA_%s_IMAGE=%s\n' "${component^^}" "$ref" >>"$out/images.env.tmp"
done
mv "$out/images.env.tmp" "$out/images.env"

helm() { "${ZASTAVA_HELM_PYTHON:?}" tests/e2e/helm.py "$@"; }
rm -f "$out"/zastava-*.tgz
helm package charts/zastava "$out" >/dev/null
chart=$(compgen -G "$out/zastava-*.tgz")
pushed=$(helm push "$chart" "oci://$registry/charts" ${plain_http:+--plain-http})
sign "${pushed#oci://}" "$out/chart-sign.log"
log "chart: $pushed, signed"
printf '%s\n' "${pushed%@*}" >"$out/chart.ref"
