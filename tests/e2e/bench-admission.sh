#!/usr/bin/env bash
# `make bench-admission`: admission as the apiserver sees it (tests/e2e/benches/admission.rs).
# Brings the local cluster up, builds and publishes Zastava's images (images/make.sh: the
# release profile, what ships; BENCH_IMAGE_PROFILE=dev measures the dev binaries instead),
# installs charts/zastava and runs N = 10, 100, 500 concurrent creators through the real
# apiserver with and without Zastava's webhook configuration. The release is uninstalled at the
# end, finished or not. Needs the cluster to itself: no other Zastava (make demo, the e2e
# tests' host processes) may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
if kubectl get validatingwebhookconfiguration zastava-webhook >/dev/null 2>&1 &&
  ! kubectl get namespace zastava-e2e-chart >/dev/null 2>&1; then
  die "a Zastava webhook configuration not made by a chart install exists (make demo, or e2e host processes?); stop it first"
fi

profile=${BENCH_IMAGE_PROFILE:-release}
# A fixed time for the images' dates (images/make.sh takes the commit's): these images are
# measured, not shipped, and the C dependencies' build scripts rerun when SOURCE_DATE_EPOCH
# changes (and everything above them with them), so the commit's time would rebuild every
# dependency after each commit. The load generator is built with the same environment, so
# the dependencies are compiled once for both.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
IMAGE_PROFILE=$profile bash images/make.sh
export ZASTAVA_IMAGES_ENV=$PWD/target/images/$profile/images.env
export ZASTAVA_IMAGES_PUBKEY=$PWD/target/images/$profile/cosign.pub
log "benchmarking admission through the apiserver ($profile images)"
RUSTFLAGS=$(release_rustflags) cargo bench --locked -p zastava-e2e --bench admission
