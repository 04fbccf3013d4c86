# A configuration error is reported with file and line, and virtiod keeps
# running with the last good configuration: at start and on reload.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_virtiod
conf=/etc/virtiod/virtiod.conf.d/90-broken.conf
printf '[Device]\nType=block\nClaim=maybe\n' > "$conf"
reload_virtiod
wait_for "journalctl -u virtiod --no-pager | grep -q '$conf:3'" 20 || fail "no error naming $conf:3 in the journal"
[ "$(systemctl is-active virtiod)" = active ] || fail "virtiod stopped after a bad reload"
systemctl show -p StatusText virtiod | grep -q "config error" || fail "status text does not mention the error"
virtioctl list >/dev/null || fail "virtioctl does not answer after a bad reload"
[ "$(driver_of "$(virtio_functions 1042)")" = virtio-pci ] || fail "the broken config claimed the disk"
# A broken config at start: still starts, claims nothing, says where.
systemctl stop virtiod
systemctl start virtiod || fail "virtiod did not start with a broken config"
journalctl -u virtiod --no-pager | grep "$conf:3" | grep -q "Claim= needs yes or no" || fail "start-time error lacks the reason"
[ "$(virtioctl list --json | jq '[.[] | select(.state != "unclaimed")] | length')" -eq 0 ] || fail "something claimed"
rm -f "$conf"
