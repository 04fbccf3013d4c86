# Shared settings for the VM scripts. Sourced, not run.
# The cache lives outside the git tree and is keyed on everything that shapes the image.
VM_CACHE=${VIRTIOD_VM_CACHE:-/var/cache/virtiod-vm}
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$VM_DIR/../.." && pwd)
GUEST_PACKAGES="systemd,systemd-sysv,udev,kmod,liburing2,iproute2,linux-image-amd64,pciutils,iperf3,fio,ethtool,tcpdump,iputils-ping,procps,util-linux,jq,socat,man-db,memtester,git,linux-perf"

log() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] error: %s\n' "$*" >&2; exit 1; }

# The Debian mirror this machine already uses (never a hard-coded host).
debian_mirror() {
    local m
    m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
    [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v security | awk '{print $2}' | head -n1)
    [ -n "$m" ] || die "no Debian mirror found in the apt sources"
    echo "$m"
}

# Key of the image: the builder script, this file and the kernel flavour.
image_key() {
    local flavour=$1
    cat "$VM_DIR/build-image.sh" "$VM_DIR/lib.sh" "$VM_DIR/guest/"* | sha256sum | cut -c1-12 | sed "s/^/$flavour-/"
}

# What the VM scripts need on the host: one list, in scripts/setup-host.
need_host_packages() {
    "$REPO_DIR/scripts/setup-host" || die "host packages missing (scripts/setup-host)"
}
