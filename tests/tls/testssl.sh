#!/usr/bin/env bash
# The listener's TLS configuration, checked from outside with testssl.sh
# (https://testssl.sh, Debian package `testssl.sh`): starts `vobiz-tunnel listen` on a free
# loopback port with a temporary store and development certificate, scans it (protocols,
# every cipher, forward secrecy, vulnerabilities) and fails unless
#
#   - only TLS 1.2 and TLS 1.3 are offered (SSLv2, SSLv3, TLS 1.0 and 1.1 are not),
#   - every offered cipher suite is forward-secret (TLS 1.3, or ECDHE/DHE) and AEAD
#     (GCM, ChaCha20-Poly1305, CCM),
#   - no finding is VULNERABLE or of severity HIGH or CRITICAL, and the scan itself worked.
#
# It takes about a minute, so CI (.ci/run) does not run it; `cargo test --test tls_config`
# asserts the same properties quickly without testssl. Usage:
#
#   tests/tls/testssl.sh                 # builds the debug binary with cargo, scans it
#   VOBIZ_TUNNEL_BIN=path/to/vobiz-tunnel tests/tls/testssl.sh
#   KEEP=1 tests/tls/testssl.sh          # keep the report folder (printed) afterwards
#
# Needs testssl (or testssl.sh) and jq on PATH: apt-get install -y testssl.sh jq
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "testssl check: FAILED: $*" >&2; exit 1; }

testssl=$(command -v testssl || command -v testssl.sh) \
  || fail "testssl.sh is not installed (apt-get install -y testssl.sh)"
command -v jq >/dev/null || fail "jq is not installed (apt-get install -y jq)"

bin=${VOBIZ_TUNNEL_BIN:-}
if [[ -z $bin ]]; then
  cargo build --quiet --bin vobiz-tunnel
  bin="${CARGO_TARGET_DIR:-target}/debug/vobiz-tunnel"
fi
[[ -x $bin ]] || fail "no binary at $bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/vobiz-testssl.XXXXXX")
listener=
cleanup() {
  [[ -n $listener ]] && kill "$listener" 2>/dev/null && wait "$listener" 2>/dev/null
  if [[ -n ${KEEP:-} ]]; then echo "reports kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Port 0: the listener picks a free port and prints it in its first JSON line.
env -u VOBIZ_AUTH_TOKEN -u VOBIZ_MAIN_AUTH_TOKEN "$bin" listen --listen 127.0.0.1:0 --no-tui \
  --log-format json --forward http://127.0.0.1:9 \
  --store "$work/exchanges.db" --certs-dir "$work/certs" \
  >"$work/listener.jsonl" 2>"$work/listener.log" &
listener=$!
url=
for _ in $(seq 1 300); do
  url=$(head -n 1 "$work/listener.jsonl" | jq -r 'select(.type == "listening") | .url' 2>/dev/null || true)
  [[ -n $url ]] && break
  kill -0 "$listener" 2>/dev/null || fail "the listener did not start: $(cat "$work/listener.log")"
  sleep 0.1
done
[[ -n $url ]] || fail "the listener printed no listening line within 30 s"
target=${url#https://}
echo "== testssl against $target ($("$testssl" --version 2>/dev/null | grep -o 'testssl *[0-9.]*' | head -n 1))"

report="$work/testssl.json"
# -p protocols, -e every cipher the local tables know (370, by sockets), -f forward secrecy,
# -U all vulnerability checks. No DNS: the target is an address.
timeout 900 "$testssl" --quiet --color 0 --warnings off --nodns none \
  --connect-timeout 10 --openssl-timeout 10 \
  -p -e -f -U --jsonfile "$report" "$target" | tee "$work/testssl.txt" \
  || fail "testssl did not complete (see above)"
[[ -s $report ]] || fail "testssl wrote no JSON report"

problems=()
finding() { jq -r --arg id "$1" '.[] | select(.id == $id) | .finding' "$report"; }

# The scan worked: protocols were tested and at least one cipher was found.
[[ -n $(finding TLS1_2) ]] || problems+=("no result for TLS 1.2: the scan did not work")
mapfile -t fatal < <(jq -r '.[] | select(.severity == "FATAL") | "\(.id): \(.finding)"' "$report")
for f in "${fatal[@]}"; do problems+=("scan error: $f"); done

# Protocols: TLS 1.2 and 1.3, nothing older.
for old in SSLv2 SSLv3 TLS1 TLS1_1; do
  f=$(finding "$old")
  [[ $f == "not offered"* ]] || problems+=("$old: $f (must not be offered)")
done
for new in TLS1_2 TLS1_3; do
  f=$(finding "$new")
  [[ $f == "offered"* ]] || problems+=("$new: $f (must be offered)")
done

# Ciphers: each offered one forward-secret and AEAD. The finding's columns: hexcode, OpenSSL
# name, key exchange, encryption, bits, IANA name.
mapfile -t ciphers < <(jq -r '.[] | select(.id | startswith("cipher_x")) | .finding' "$report")
[[ ${#ciphers[@]} -gt 0 ]] || problems+=("no cipher suite found: the scan did not work")
for line in "${ciphers[@]}"; do
  iana=$(awk '{print $NF}' <<<"$line")
  case $iana in
    TLS_AES_128_GCM_SHA256 | TLS_AES_256_GCM_SHA384 | TLS_CHACHA20_POLY1305_SHA256 \
      | TLS_AES_128_CCM_SHA256) ;; # TLS 1.3: always (EC)DHE, always AEAD
    TLS_ECDHE_*_WITH_*_GCM_* | TLS_ECDHE_*_WITH_CHACHA20_POLY1305_* | TLS_ECDHE_*_WITH_*_CCM* \
      | TLS_DHE_*_WITH_*_GCM_* | TLS_DHE_*_WITH_CHACHA20_POLY1305_*) ;;
    *) problems+=("cipher not forward-secret AEAD: $line") ;;
  esac
done
echo "== offered cipher suites: ${#ciphers[@]}"

# Vulnerabilities, and anything else testssl rates high or critical.
mapfile -t bad < <(jq -r '.[] | select(.severity == "HIGH" or .severity == "CRITICAL"
  or (.finding | test("VULNERABLE"))) | "\(.id) [\(.severity)]: \(.finding)"' "$report")
for b in "${bad[@]}"; do problems+=("$b"); done

if [[ ${#problems[@]} -gt 0 ]]; then
  printf '  - %s\n' "${problems[@]}" >&2
  fail "${#problems[@]} problems"
fi
echo "== testssl check passed: TLS 1.2/1.3 only, ${#ciphers[@]} forward-secret AEAD suites, no vulnerability"
