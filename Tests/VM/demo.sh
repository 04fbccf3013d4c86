#!/bin/bash
# make demo: what a user sees on a machine with virtio devices. The demo
# configuration below (embedded here, installed as a drop-in) claims every
# test device except the twin NIC; then virtiod runs under systemd, virtioctl
# shows what it drives, and `systemctl stop` gives everything back.
say() { echo "VIRTIOD-DEMO $*"; }
show() { say "\$ $*"; "$@" 2>&1 | sed 's/^/VIRTIOD-DEMO   /'; }
say "== virtio PCI functions in this VM, as the kernel drives them"
show virtiod discover
show lsblk -o NAME,SIZE,SERIAL
say "== a configuration that hands the test devices to virtiod (the shipped default claims nothing)"
mkdir -p /etc/virtiod/virtiod.conf.d
cat > /etc/virtiod/virtiod.conf.d/50-demo.conf <<'CONF'
# The NIC with this MAC (its twin 52:54:00:12:34:02 stays with the kernel).
[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
InterfaceName=vtnet0

[Device]
Type=block
Claim=yes

[Device]
Type=balloon
Claim=yes

[Device]
Type=console
Claim=yes

[Device]
Type=9p
Claim=yes
CONF
show cat /etc/virtiod/virtiod.conf.d/50-demo.conf
show systemctl start virtiod
show systemctl status virtiod --no-pager --lines 0
for i in $(seq 60); do
    [ "$(virtioctl list --json | jq '[.[] | select(.state == "running")] | length')" -ge 5 ] && break
    sleep 0.5
done
show virtioctl list
show virtioctl plugins
say "== every plugin process is a systemd unit of its own"
show systemctl list-units --no-legend 'virtiod-*'
blk=$(virtioctl list --json | jq -r '.[] | select(.type == "block") | .address')
show virtioctl status "$blk"
show lsblk -o NAME,SIZE,SERIAL
say "== the host folders shared into the VM, mounted through virtiod's 9p plugin (FUSE)"
show findmnt -t fuse
show cat /run/virtiod-9p/virtiod9p/hello.txt
say "== give the disk back, then take it again"
show virtioctl release "$blk"
show lsblk -o NAME,SIZE,SERIAL
show virtioctl claim "$blk"
show journalctl -u virtiod --no-pager -o cat --lines 12
say "== systemctl restart virtiod: the plugins keep running (same pids)"
show virtioctl plugins
show systemctl restart virtiod
show virtioctl plugins
say "== systemctl stop gives every device back to its kernel driver"
show systemctl stop virtiod
show virtiod discover
say "== the virtqueue core, statically linked, in this guest (TCG: slow CPU)"
show /usr/libexec/virtiod/virtio-ring-bench --seconds 0.05
rm -f /etc/virtiod/virtiod.conf.d/50-demo.conf
