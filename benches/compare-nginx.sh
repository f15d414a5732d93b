#!/usr/bin/env bash
# The load benchmark side by side with nginx: installs Debian's nginx if it is missing, then
# runs `cargo bench --bench load`, which starts vobiz-tunnel (release build), nginx as a TLS
# reverse proxy with the same dev certificate, and one origin behind both, and prints the
# table with the vobiz-tunnel/nginx ratios and each proxy's CPU time per request.
#
#   benches/compare-nginx.sh                 # all workloads, 5 s each
#   LOAD_SECS=10 LOAD_ONLY=a,c benches/compare-nginx.sh
#   LOAD_SOAK=1000000 LOAD_ONLY=a benches/compare-nginx.sh   # + the memory soak
#   LOAD_NGINX_UPSTREAM=close benches/compare-nginx.sh         # nginx's stock proxy_pass
#
# Every process binds 127.0.0.1 only. See benches/load/main.rs for the settings.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx (Debian package nginx-light)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq nginx-light
fi
# The package starts a system nginx on port 80; it is not used and may stay.
exec cargo bench --bench load
