# Who may do what on the control socket (0660 root:virtiod): a user outside
# the virtiod group cannot connect at all (exit 5, with what to do); a
# member may read (list, status, plugins, wait) but every changing verb
# exits 5; root may do everything.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_virtiod
blk=$(virtio_functions 1042)
stat -c '%a %U:%G' /run/virtiod/control | grep -qx '660 root:virtiod' || fail "socket is $(stat -c '%a %U:%G' /run/virtiod/control)"
gid=$(getent group virtiod | cut -d: -f3)
outsider() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
member() { setpriv --reuid=nobody --regid=nogroup --groups="$gid" "$@"; }
for verb in list "status $blk" plugins "claim $blk" "release $blk" "unload block" "load block" "reload block"; do
    rc=0; out=$(outsider virtioctl $verb 2>&1) || rc=$?
    [ $rc -eq 5 ] || fail "outsider: virtioctl $verb exited $rc, expected 5: $out"
done
echo "$out" | grep -q "virtiod group" || fail "the refusal does not say how to get access: $out"
for verb in list "status $blk" plugins; do
    member virtioctl $verb >/dev/null || fail "member: virtioctl $verb failed"
done
member virtioctl wait --timeout 5 >/dev/null || fail "member: virtioctl wait failed"
for verb in "claim $blk" "release $blk" "unload block" "load block" "reload block"; do
    rc=0; out=$(member virtioctl $verb 2>&1) || rc=$?
    [ $rc -eq 5 ] || fail "member: virtioctl $verb exited $rc, expected 5: $out"
done
[ "$(driver_of "$blk")" = virtio-pci ] || fail "a denied claim changed the disk"
virtioctl list >/dev/null || fail "root cannot list"
echo "outsiders: no access (exit 5); virtiod group: read verbs only; root: all"
