# scripts/deps.sh - sourced by scripts/test and scripts/demo: installs the
# Debian 12 packages the build needs, only those missing, quietly.
MLT_PKGS=(gcc libc6-dev clang libclang-rt-14-dev python3 libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libconfig-dev libjemalloc-dev check
          meson ninja-build pkg-config libopenblas-dev zlib1g-dev dataset-fashion-mnist
          libsystemd-dev systemd libmicrohttpd-dev python3-matplotlib
          python3-numpy python3-pytest python3-torch) # python3-*: tests/python (#14)

mlt_install_deps() {
    local missing=() p
    for p in "${MLT_PKGS[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# mlt_build DIR [meson options...]: configure once, then build.
mlt_build() {
    local dir="$1"; shift
    if [ -f "$dir/build.ninja" ]; then
        [ $# -eq 0 ] || meson configure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir"
}
