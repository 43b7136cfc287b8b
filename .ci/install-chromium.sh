#!/usr/bin/env bash
# Install headless Chromium (and a font) from Debian packages so that
# tests/workflow/test_report_html.py can render the Snakemake HTML report.
#
# Idempotent: does nothing when a chromium binary is already on PATH. Needs root and
# apt-get; otherwise it only prints why it skipped (the report rendering test then skips).
set -euo pipefail

for bin in chromium chromium-browser; do
    if command -v "$bin" >/dev/null 2>&1; then
        echo "install-chromium: $(command -v "$bin") present, nothing to do"
        exit 0
    fi
done

# shellcheck source=.ci/apt-guard.sh
source "$(dirname "$0")/apt-guard.sh"
apt_guard install-chromium "the report rendering test"
start=$(date +%s)
apt-get update -qq
# fonts-dejavu-core: without any font, text renders as nothing (a near-blank screenshot);
# fontconfig lets Chromium find it.
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fontconfig
echo "install-chromium: installed in $(($(date +%s) - start)) s"
chromium --version
