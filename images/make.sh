#!/usr/bin/env bash
# `make images`: builds the three binaries, their OCI images (images/build.py) and publishes
# them to the local cluster's registry, signed and with SBOMs (images/publish.sh); brings the
# cluster up first when it is not (its registry is where the images go).
#
# IMAGE_PROFILE (default release) is the cargo profile: what ships is built with `release`;
# the e2e tests build the images from the `dev` binaries they already have (the image build is
# the same, only the compiler's optimisation differs).
# Output: target/images/<profile>/{operator,webhook,observer}/, images.env, cosign.pub.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../tests/e2e/cluster/lib.sh
. tests/e2e/cluster/lib.sh

profile=${IMAGE_PROFILE:-release}
case $profile in
  dev) bin_dir=target/debug ;;
  *) bin_dir=target/$profile ;;
esac
out=target/images/$profile

# The commit's time: every file's mtime and the images' creation date (reproducible builds),
# and the date C compilers put in for __DATE__/__TIME__ (mimalloc's options.c has them).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

if [[ ${IMAGE_SKIP_CARGO:-} != 1 ]]; then
  log "cargo build --profile $profile (operator, webhook, observer)"
  RUSTFLAGS=$(release_rustflags) \
    cargo build --locked --profile "$profile" --bins -p zastava-operator -p zastava-webhook -p zastava-observer
fi

version=$(cargo metadata --locked --offline --no-deps --format-version 1 |
  jq -r '.packages[] | select(.name == "zastava-operator") | .version')
revision=$(git rev-parse HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || revision+="-dirty"
epoch=$SOURCE_DATE_EPOCH
source_url=${IMAGE_SOURCE:-$(git config --get remote.origin.url || echo "local checkout")}

mkdir -p "$out"
python3 images/build.py --bin-dir "$bin_dir" --profile "$profile" --out "$out" \
  --debs "$ZASTAVA_CACHE/debs/image-base" --version "$version" --revision "$revision" \
  --source "$source_url" --epoch "$epoch"

cluster_answers || bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
bash images/publish.sh "$out" "$ZASTAVA_REGISTRY" --plain-http
log "images: $(tr '\n' ' ' <"$out/images.env")"
