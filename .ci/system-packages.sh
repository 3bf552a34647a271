#!/bin/sh
# Installs the Debian/Ubuntu packages streamgate needs, when they are missing
# and we can (root with apt-get). Without them the interop tests skip (or fail in CI).
#   python  - what `python3 -m venv` needs on a fresh Debian/Ubuntu
#   interop - ffmpeg/ffprobe, nginx with its RTMP and stream (TLS proxy, the
#             rtmps:// origin of the tests) modules, rtmpdump (librtmp),
#             redis-server (the [cluster] store) and chromium (the built-in page's
#             browser test, driven by Playwright), the real peers of the tests
set -u
want="$1"
missing=""
case "$want" in
  python)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing="python3-venv python3-pip"
    ;;
  interop)
    command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$missing ffmpeg"
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
    [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing="$missing libnginx-mod-rtmp"
    [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$missing libnginx-mod-stream"
    command -v rtmpdump >/dev/null 2>&1 || missing="$missing rtmpdump"
    command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    ;;
esac
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "WARNING: apt-get could not install:$missing" >&2; exit 0; }
else
  echo "WARNING: missing system packages:$missing" >&2
  echo "WARNING: install them (apt-get install$missing) or the tests that need them skip" >&2
fi
exit 0
