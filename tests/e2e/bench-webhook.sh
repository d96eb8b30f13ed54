#!/usr/bin/env bash
# `make bench-webhook`: brings the local registry up (with the cluster), pushes an image,
# signs it with cosign and attaches a CycloneDX SBOM with oras, then runs the admission
# benchmark (webhook/benches/admission.rs) against it. Prints medians, p99 and ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A repository of its own per run: cosign appends each run's signature to the image's
# signature manifest, so a shared one made every later cold decision fetch and verify one
# more signature blob (the cold path slowed with each run).
image=$ZASTAVA_REGISTRY/bench/admission-$(date +%s):v1
"$ORAS" cp --from-plain-http --to-plain-http "$ZASTAVA_TEST_IMAGE" "$image" >/dev/null
(
  cd "$work"
  COSIGN_PASSWORD="" "$COSIGN" generate-key-pair >/dev/null 2>&1
  COSIGN_PASSWORD="" "$COSIGN" sign --key cosign.key --tlog-upload=false --allow-http-registry \
    --allow-insecure-registry -y "${image%:*}@$ZASTAVA_TEST_IMAGE_DIGEST" >/dev/null 2>&1
  echo '{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}' >sbom.json
  "$ORAS" attach --plain-http --artifact-type application/vnd.cyclonedx+json \
    "${image%:*}@$ZASTAVA_TEST_IMAGE_DIGEST" sbom.json:application/vnd.cyclonedx+json >/dev/null
)
log "benchmarking against $image (signed, CycloneDX SBOM attached)"
BENCH_IMAGE=$image BENCH_PUBKEY=$(cat "$work/cosign.pub") \
  cargo bench --locked -p zastava-webhook --bench admission
