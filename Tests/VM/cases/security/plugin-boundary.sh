# The root ↔ plugin boundary holds: (1) a plugin that tries to shrink the
# memfds it shares with virtiod (the DMA memory, the hand-over area) gets
# EPERM — their sizes are sealed — and virtiod keeps running; (2) a plugin
# that cannot drop root refuses to run (virtiod run by hand, without
# systemd, with CAP_SETUID/CAP_SETGID taken from its bounding set: its
# plugins are children that would stay root).
source /payload/cases/lib.sh
cfg=/tmp/boundary
cleanup() {
    [ -n "${vpid:-}" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
    rm -rf "$cfg" /etc/virtiod/plugins/hostile.plugin
    stop_virtiod
}
trap cleanup EXIT
cp -a /payload/extra/faults/. /
blk=$(virtio_functions 1042)

# 1. A hostile plugin: a manifest for the NIC whose Exec= is the
#    fault-injecting build of the net plugin, told to truncate.
mkdir -p /etc/virtiod/plugins
cat > /usr/local/lib/virtiod-test/virtiod-truncate <<'SH'
#!/bin/sh
VIRTIOD_PLUGIN_FAULT=truncate-memfd exec /usr/local/lib/virtiod-test/virtiod-net-faults "$@"
SH
chmod 755 /usr/local/lib/virtiod-test/virtiod-truncate
sed 's|^Exec=.*|Exec=/usr/local/lib/virtiod-test/virtiod-truncate|' /usr/lib/virtiod/plugins/net.plugin > /etc/virtiod/plugins/hostile.plugin
start_virtiod "[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
Plugin=hostile"
main=$(systemctl show -P MainPID virtiod)
net=""
wait_for "[ -n \"\$(claimed_nic)\" ]" 30 || fail "the NIC was not claimed"
net=$(claimed_nic)
wait_state "$net" running 60
unit=$(virtioctl status "$net" --json | jq -r .plugin.unit)
journalctl -u "$unit" -o cat --no-pager | grep "fault truncate-memfd" > /tmp/truncate || true
cat /tmp/truncate
[ "$(grep -c 'Operation not permitted' /tmp/truncate)" = 2 ] || fail "truncate was not refused for both memfds: $(cat /tmp/truncate)"
[ "$(systemctl show -P MainPID virtiod)" = "$main" ] && [ "$(systemctl is-active virtiod)" = active ] || fail "virtiod did not survive"
virtioctl status "$net" --json | jq -e '.state == "running"' >/dev/null || fail "the device is $(vstate "$net")"
rm -f /etc/virtiod/plugins/hostile.plugin
stop_virtiod

# 2. No way to drop root: the plugin must refuse to run.
mkdir -p "$cfg/conf.d"
printf '[Device]\nSerial=virtiod-blk0\nClaim=yes\n' > "$cfg/conf.d/50.conf"
: > "$cfg/virtiod.conf"
setpriv --bounding-set=-setuid,-setgid --inh-caps=-setuid,-setgid \
    env -u NOTIFY_SOCKET VIRTIOD_LOG_STDERR=1 virtiod serve --config "$cfg/virtiod.conf" --config-dir "$cfg/conf.d" \
    --socket "$cfg/control" > "$cfg/log" 2>&1 &
vpid=$!
wait_for "[ -S $cfg/control ]" 30 || fail "virtiod by hand did not start: $(tail -n 5 $cfg/log)"
export VIRTIOD_CONTROL_SOCKET=$cfg/control
wait_for "grep -q 'refusing to run as root' $cfg/log" 30 || fail "the plugin did not refuse: $(grep -i block $cfg/log | tail -n 5)"
grep -m1 "refusing to run as root" "$cfg/log"
virtioctl status "$blk" --json | jq -e '.state != "running"' >/dev/null || fail "the disk's plugin runs although it could not drop root"
# (Each attempt is a fresh process that starts as root and refuses before
# touching the device: none ever drove it.)
! grep -q "DRIVER_OK" "$cfg/log" || fail "a block plugin drove the disk as root: $(grep -m1 DRIVER_OK "$cfg/log")"
kill "$vpid"; wait "$vpid" 2>/dev/null || true; vpid=""
wait_for "[ \$(driver_of $blk) = virtio-pci ]" 20 || fail "the disk was not given back: $(driver_of "$blk")"
