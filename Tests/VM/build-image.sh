#!/usr/bin/env bash
# Build (once) the Debian bookworm guest the VM suite boots, cached under
# $VM_CACHE/<key>/: vmlinuz, initrd.img, root.img. Idempotent: an existing
# image with the same key is reused. Prints the image folder.
#
#   build-image.sh [--backports]      (--backports: bookworm-backports kernel, has ublk)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

flavour=stock
[ "${1:-}" = "--backports" ] && flavour=backports
key=$(image_key "$flavour")
out="$VM_CACHE/$key"
if [ -f "$out/root.img" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
    echo "$out"
    exit 0
fi

need_host_packages
mkdir -p "$VM_CACHE"
work=$(mktemp -d "$VM_CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mirror=$(debian_mirror)
start=$(date +%s)
log "debootstrap bookworm from $mirror (this takes a few minutes the first time)"
debootstrap --variant=minbase --include="$GUEST_PACKAGES" bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

if [ "$flavour" = backports ]; then
    log "installing the bookworm-backports kernel"
    echo "deb $mirror bookworm-backports main" > "$root/etc/apt/sources.list.d/backports.list"
    for fs in proc sys dev; do mount --bind "/$fs" "$root/$fs"; done
    trap 'for fs in proc sys dev; do umount -l "$root/$fs" 2>/dev/null || true; done; rm -rf "$work"' EXIT
    chroot "$root" apt-get update -q > "$work/chroot.log" 2>&1
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports linux-image-amd64 \
        >> "$work/chroot.log" 2>&1 || { tail -n 30 "$work/chroot.log" >&2; die "backports kernel install failed"; }
    for fs in proc sys dev; do umount -l "$root/$fs"; done
fi

log "customising the guest"
echo virtiod-vm > "$root/etc/hostname"
printf 'LABEL=root / ext4 rw,errors=remount-ro 0 1\nLABEL=payload /payload ext4 defaults,nofail 0 2\n' > "$root/etc/fstab"
mkdir -p "$root/payload"
sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow"
install -D -m 644 "$VM_DIR/guest/autologin.conf" "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
install -D -m 644 "$VM_DIR/guest/virtiod-test.service" "$root/etc/systemd/system/virtiod-test.service"
ln -sf /etc/systemd/system/virtiod-test.service "$root/etc/systemd/system/multi-user.target.wants/virtiod-test.service"
# Nothing in the guest may reach out: no apt timers, no network configuration at boot.
rm -f "$root/etc/systemd/system/timers.target.wants/"apt-daily*.timer
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)
mkdir -p "$work/out"
cp "$kernel" "$work/out/vmlinuz"
cp "$initrd" "$work/out/initrd.img"
truncate -s 2G "$work/out/root.img"
mkfs.ext4 -q -F -L root -d "$root" "$work/out/root.img"
rm -rf "$out"
mv "$work/out" "$out"
log "image $key built in $(( $(date +%s) - start )) s"
echo "$out"
