#!/bin/sh
# The browser tests drive Debian's chromium through Playwright (no browser download).
# Install it when missing and we may (root with apt-get); otherwise say so: the browser
# tests then skip on a developer machine and fail in CI (CI=true).
set -eu
if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser tests (apt-get) ..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
else
    echo "chromium is missing: install it (sudo apt-get install chromium) to run the browser tests" >&2
fi
