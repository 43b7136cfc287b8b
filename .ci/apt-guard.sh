# Sourced by the .ci/install-*.sh scripts: `apt_guard NAME WHAT` exits the calling script
# (status 0, saying why) unless this is root with apt-get, so that its tests skip instead.
apt_guard() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "$1: not root, skipping installation ($2 will be skipped)" >&2
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$1: apt-get not available, skipping installation" >&2
        exit 0
    fi
    export DEBIAN_FRONTEND=noninteractive
}
