# `virtioctl unload PLUGIN` stops its processes and leaves the devices
# claimed and quiet (reset); the net TAP interface stays with its address;
# `virtioctl load` starts them again; `unload --release` gives them back.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
blk=$(virtio_functions 1042)
start_virtiod "[Device]
Serial=virtiod-blk0
Claim=yes

[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
InterfaceName=vtnet0"
net=$(claimed_nic)
wait_state "$blk" running 60
wait_state "$net" running 60
ip addr add 10.77.0.1/24 dev vtnet0
old=$(virtioctl status "$blk" --json | jq .plugin.pid)

virtioctl unload block >/dev/null || fail "unload block failed"
[ "$(vstate "$blk")" = unloaded ] || fail "state after unload: $(vstate "$blk")"
! kill -0 "$old" 2>/dev/null || fail "block plugin $old still runs after unload"
[ "$(driver_of "$blk")" = vfio-pci ] || fail "unload gave the disk away ($(driver_of "$blk"))"
[ ! -b /dev/vda ] || fail "/dev/vda appeared while unloaded"
virtioctl plugins --json | jq -e '.[] | select(.name == "block") | .pids == []' >/dev/null || fail "plugins still lists block pids"
# virtioctl wait: done at once for the state a device is in; a clear error,
# exit 1, when it does not get there in time; exit 4 for a device that is not there.
virtioctl wait "$blk" --state unloaded --timeout 5 --json | jq -e '.[0].state == "unloaded"' >/dev/null \
    || fail "wait --state unloaded did not return 0 with the device's report"
rc=0; virtioctl wait "$blk" --timeout 1 2> /tmp/wait-err || rc=$?
[ $rc = 1 ] && grep -q "is unloaded" /tmp/wait-err || fail "wait for running on an unloaded device: rc $rc, $(cat /tmp/wait-err)"
rc=0; virtioctl wait 0000:00:1f.7 --timeout 1 2>/dev/null || rc=$?
[ $rc = 4 ] || fail "wait for a device that does not exist: rc $rc, expected 4"
virtioctl wait --timeout 10 || fail "wait without devices: something stayed in transition"
virtioctl load block >/dev/null || fail "load block failed"
wait_state "$blk" running 60
[ "$(virtioctl status "$blk" --json | jq -r .driver.config.serial)" = virtiod-blk0 ] || fail "reloaded block plugin does not see the disk"

virtioctl unload net >/dev/null || fail "unload net failed"
[ "$(vstate "$net")" = unloaded ] || fail "net state after unload: $(vstate "$net")"
ip -o addr show dev vtnet0 | grep -q 10.77.0.1/24 || fail "vtnet0 or its address went away while net was unloaded"
virtioctl load net >/dev/null || fail "load net failed"
wait_state "$net" running 60
ip -o addr show dev vtnet0 | grep -q 10.77.0.1/24 || fail "vtnet0 lost its address across unload/load"

virtioctl unload block --release >/dev/null || fail "unload --release failed"
[ "$(driver_of "$blk")" = virtio-pci ] || fail "unload --release left the disk on $(driver_of "$blk")"
wait_for "[ -b /dev/vda ]" 20 || fail "/dev/vda did not come back after unload --release"
rc=0; virtioctl unload frob >/dev/null 2>&1 || rc=$?; [ $rc -ne 0 ] || fail "unload of an unknown plugin exited 0"
