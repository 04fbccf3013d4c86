# The share mounted by virtiod (9p plugin: 9P2000.L client + FUSE server):
# visible to the whole machine at /run/virtiod-9p/virtiod9p with the options
# users expect; a tree of several thousand files (zoneinfo and the docs of
# /usr/share) copied onto it and read back has the same sha256 manifest as
# the original, and the host's shared folder holds the same files.
# virtioctl status shows the mount; a killed plugin is restarted without
# losing the mount; release unmounts it.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_share
m=/run/virtiod-9p/virtiod9p
# Mounted in the host's namespace (this shell is not in virtiod's).
findmnt -n "$m" >/dev/null || fail "nothing mounted at $m: $(findmnt -t fuse -n; journalctl -u 'virtiod-mount-share-*' --no-pager -o cat | tail -n 3)"
opts=$(findmnt -n -o FSTYPE,OPTIONS "$m")
[[ $opts == fuse.virtiod* && $opts == *nosuid* && $opts == *nodev* && $opts == *allow_other* && $opts == *default_permissions* ]] \
    || fail "mount options: $opts"
grep -q "hello from the host" "$m/hello.txt" || fail "hello.txt not readable through the mount"
s=$(virtioctl status "$nine" --json)
echo "$s" | jq -e --arg m "$m" '.driver.stub == false and .driver.config.fuse == "serving" and .driver.config.mount_point == $m
    and (.endpoints[] | select(.kind == "fuse") | .details.connected == "yes")' >/dev/null \
    || fail "status: $(echo "$s" | jq -c '{stub: .driver.stub, config: .driver.config, endpoints}')"
virtioctl status "$nine" | grep -q "$m" || fail "virtioctl status does not show $m"
# An unprivileged user sees the share too (allow_other).
su nobody -s /bin/sh -c "cat $m/hello.txt" >/dev/null || fail "nobody cannot read the share"

# The tree: thousands of files, small and large, nested.
cd /usr/share
files=$(find zoneinfo doc -type f | wc -l)
[ "$files" -ge 2000 ] || fail "only $files files to copy"
t0=$(date +%s.%N)
mkdir "$m/tree"
tar -cf - zoneinfo doc | tar -C "$m/tree" -xf - || fail "copying the tree onto the share failed"
t1=$(date +%s.%N)
sync
( cd /usr/share && find zoneinfo doc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum ) > /tmp/want.sha
( cd "$m/tree" && find zoneinfo doc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum ) > /tmp/got.sha
t2=$(date +%s.%N)
cmp -s /tmp/want.sha /tmp/got.sha || fail "manifests differ: $(diff /tmp/want.sha /tmp/got.sha | head -n 4 | tr '\n' ' ')"
links=$(find zoneinfo doc -type l | wc -l)
[ "$(cd "$m/tree" && find zoneinfo doc -type l | wc -l)" = "$links" ] || fail "symlinks: $(cd "$m/tree" && find zoneinfo doc -type l | wc -l) of $links"
# The host's folder holds the same files.
( cd /usr/share && find zoneinfo doc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sed 's|  |  ./|' ) | sha256sum | cut -d' ' -f1 > /tmp/want.sum
h=$(host_step x-share-manifest '{"share": "share", "dir": "tree"}')
[ "$(echo "$h" | jq .files)" = "$files" ] || fail "the host's folder has $(echo "$h" | jq .files) files, $files copied"
[ "$(echo "$h" | jq -r .sha256)" = "$(cat /tmp/want.sum)" ] || fail "the host's folder differs from the copy"
echo "VIRTIOD-LOG 9p tree: $files files, $links symlinks; copy $(awk "BEGIN { print $t1 - $t0 }") s, read back $(awk "BEGIN { print $t2 - $t1 }") s"
virtioctl status "$nine" --json | jq -c '.driver.queues[0].counters | {requests, fuse_requests, errors, fuse_errors, fuse_unsupported, malformed}' \
    | sed 's/^/VIRTIOD-LOG 9p counters: /'
rm -rf "$m/tree" || fail "rm -rf of the tree failed"
[ -z "$(ls -A "$m" | grep -v hello.txt)" ] || fail "left on the share after rm -rf: $(ls -A "$m")"

# A plugin that dies is restarted on the reset device: the mount stays,
# what the kernel knew is looked up again (ESTALE until then, ≤ 1 s).
cd /
pid=$(virtioctl status "$nine" --json | jq .plugin.pid)
kill -9 "$pid"
wait_for "[ \"\$(virtioctl status $nine --json | jq .plugin.restarts)\" -ge 1 ]" 30 || fail "the 9p plugin was not restarted"
wait_state "$nine" running 60
sleep 1.5
timeout 20 cat "$m/hello.txt" | grep -q "hello from the host" || fail "after a plugin crash hello.txt does not read back"
timeout 20 sh -c "echo again > $m/after-crash && cat $m/after-crash && rm $m/after-crash" | grep -q again \
    || fail "after a plugin crash the share takes no new file"
[ "$(virtioctl status "$nine" --json | jq -r .driver.config.fuse)" = serving ] || fail "after the crash: $(virtioctl status "$nine" --json | jq -c .driver.config)"

# release unmounts it (the device goes back to the kernel).
cd /
virtioctl release "$nine" >/dev/null || fail "release failed"
! findmnt -n "$m" >/dev/null || fail "still mounted after release: $(findmnt -n "$m")"
