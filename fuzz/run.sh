#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named as arguments) for FUZZ_SECS seconds each
# (default 60), one after another, and exits 1 if any of them found a crash.
#
#   fuzz/run.sh                         # all four targets, 60 s each
#   FUZZ_SECS=600 nice -n 19 fuzz/run.sh filter_language
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# New inputs go to a scratch corpus (FUZZ_CORPUS, default ${TMPDIR:-/tmp}/vobiz-tunnel-fuzz),
# never into the committed seeds (fuzz/seeds/<target>); crashes go to fuzz/artifacts/<target>/.
# FUZZ_SANITIZER (default none: the crate has no unsafe code, and without ASan the search is
# about twice as fast) is passed to `cargo fuzz --sanitizer`.
set -u -o pipefail

cd "$(dirname "$0")/.."
secs="${FUZZ_SECS:-60}"
corpus_root="${FUZZ_CORPUS:-${TMPDIR:-/tmp}/vobiz-tunnel-fuzz}"
sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(form_parser signature_string har_import filter_language)
fi

failed=()
for target in "${targets[@]}"; do
    corpus="$corpus_root/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    dict=()
    if [ -f "fuzz/dicts/$target.dict" ]; then
        dict=("-dict=fuzz/dicts/$target.dict")
    fi
    echo "=== $target: ${secs}s, corpus $corpus" >&2
    if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}"; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crashes in: ${targets[*]}" >&2
