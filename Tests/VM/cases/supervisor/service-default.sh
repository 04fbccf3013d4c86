# With the default configuration `systemctl start virtiod` reaches READY
# (Type=notify), claims nothing, and virtioctl answers: changing verbs for
# root only, usage errors and "not running" with distinct non-zero exit codes.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
before=$(for d in /sys/bus/pci/devices/*; do readlink "$d/driver" || true; done)
start_virtiod
[ "$(systemctl is-active virtiod)" = active ] || fail "virtiod is $(systemctl is-active virtiod)"
systemctl show -p StatusText virtiod | grep -q "8 virtio device(s), 0 claimed" \
    || fail "unexpected status text: $(systemctl show -p StatusText virtiod)"
list=$(virtioctl list --json) || fail "virtioctl list failed"
[ "$(echo "$list" | jq length)" -eq 8 ] || fail "expected 8 devices: $list"
[ "$(echo "$list" | jq '[.[] | select(.state == "unclaimed")] | length')" -eq 8 ] || fail "something was claimed: $list"
after=$(for d in /sys/bus/pci/devices/*; do readlink "$d/driver" || true; done)
[ "$before" = "$after" ] || fail "driver bindings changed under the default config"
virtioctl list | grep -q "8 devices listed, 0 claimed by virtiod." || fail "table: $(virtioctl list)"
[ "$(virtioctl plugins --json | jq '[.[] | select(.installed)] | length')" -eq 5 ] || fail "plugins not all installed: $(virtioctl plugins)"
blk=$(virtio_functions 1042)
virtioctl status "$blk" | grep -q "State: unclaimed" || fail "status text: $(virtioctl status "$blk")"
# Only root and the virtiod group may talk to virtiod (security/unprivileged.sh has the rest).
rc=0; setpriv --reuid=nobody --regid=nogroup --clear-groups virtioctl claim "$blk" >/dev/null 2>&1 || rc=$?
[ $rc -eq 5 ] || fail "claim as nobody exited $rc, expected 5 (permission denied)"
[ "$(driver_of "$blk")" = virtio-pci ] || fail "a denied claim changed the device"
rc=0; virtioctl status 0000:99:99.9 >/dev/null 2>&1 || rc=$?; [ $rc -eq 4 ] || fail "unknown device exited $rc, expected 4"
rc=0; virtioctl frobnicate >/dev/null 2>&1 || rc=$?; [ $rc -ne 0 ] || fail "an unknown verb exited 0"
out=$(virtioctl frobnicate 2>&1 || true); echo "$out" | grep -qi "usage" || fail "an unknown verb printed no usage: $out"
virtioctl | grep -q "devices listed" || fail "virtioctl without a verb does not list"
systemctl stop virtiod
rc=0; out=$(virtioctl list 2>&1) || rc=$?
[ $rc -eq 3 ] || fail "virtioctl without virtiod exited $rc, expected 3"
echo "$out" | grep -q "virtiod is not running" || fail "no clear message without virtiod: $out"
