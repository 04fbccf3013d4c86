# POSIX behaviours on the share virtiod mounts (FUSE over its 9P client),
# each also run on the kernel's own v9fs mount of the twin 9p device
# (kernel9p) in the same guest: the results must be equal; differences are
# listed. The table: rename over an existing file, unlink of an open file,
# O_APPEND, truncate, symlink/readlink, hard-link counts, rmdir of a
# non-empty directory, chmod/chown, mtime updates, readdir while creating,
# and a few more.
source /payload/cases/lib.sh
k=/mnt/kernel9p
cleanup() { cd /; umount "$k" 2>/dev/null || true; stop_virtiod; }
trap cleanup EXIT
start_share
v=$share
mkdir -p "$k"
mount -t 9p -o trans=virtio,version=9p2000.L kernel9p "$k" || fail "the kernel's v9fs mount of kernel9p failed"

# One behaviour per line: "name: result". Errors are shown without the path.
behaviours() {
    local d=$1/posix
    rm -rf "$d"; mkdir "$d"; cd "$d"
    err() { sed -E 's/^[^:]+: (cannot [^:]+: )?//; s/^.*: //'; }
    echo "rename-over: $(echo a > a; echo b > b; mv a b; cat b; ls | tr '\n' ' ')"
    echo "unlink-open: $(echo data > f; exec 3< f; rm f; cat <&3; exec 3<&-; [ -e f ] && echo exists || echo gone)"
    echo "unlink-open-write: $(exec 3<> g; rm g; echo more >&3; stat -L -c %s /proc/self/fd/3 2>&1; exec 3>&-)"
    echo "append: $(printf 1 > ap; printf 2 >> ap; printf 3 >> ap; cat ap)"
    echo "truncate: $(printf 123456 > tr; truncate -s 3 tr; cat tr; truncate -s 5 tr; echo " $(stat -c %s tr)"; od -An -tx1 tr | tr -s ' ')"
    echo "symlink: $(ln -s ../some/target sl; readlink sl; stat -c %F sl; cat sl 2>&1 | err)"
    echo "hardlink: $(echo x > h1; ln h1 h2; stat -c %h h1; rm h1; stat -c %h h2; cat h2; [ "$(stat -c %i h2)" != "" ] && echo ok)"
    echo "hardlink-inode: $(echo y > i1; ln i1 i2; [ "$(stat -c %i i1)" = "$(stat -c %i i2)" ] && echo same || echo differ)"
    echo "rmdir-nonempty: $(mkdir nd; touch nd/x; rmdir nd 2>&1 | err)"
    echo "rmdir-file: $(touch rf; rmdir rf 2>&1 | err)"
    echo "unlink-dir: $(mkdir ud; rm ud 2>&1 | err)"
    echo "mkdir-exists: $(mkdir me; mkdir me 2>&1 | err)"
    echo "chmod: $(touch cm; chmod 640 cm; stat -c %a cm; chmod 2755 cm; stat -c %a cm)"
    echo "chown: $(touch co; chown 1000:1001 co; stat -c %u:%g co)"
    echo "mtime-set: $(touch -d @1000000000 mt; stat -c %Y mt)"
    echo "mtime-write: $(echo x >> mt; [ "$(stat -c %Y mt)" -gt 1000000000 ] && echo updated || echo stale)"
    echo "size-after-write: $(dd if=/dev/zero of=big bs=1k count=300 status=none; stat -c %s big)"
    echo "sparse-write: $(dd if=/dev/zero of=sp bs=1 count=1 seek=1000000 status=none; stat -c %s sp)"
    echo "noclobber: $(echo x > nc; (set -o noclobber; echo y > nc) 2>&1 | err)"
    echo "enoent: $(cat nothing 2>&1 | err)"
    echo "rename-dir-over-nonempty: $(mkdir r1 r2; touch r2/x; mv -T r1 r2 2>&1 | err)"
    echo "rename-dir: $(mkdir -p rd/sub; echo z > rd/sub/f; mv rd rd2; cat rd2/sub/f)"
    echo "readdir-while-creating: $(mkdir rw; cd rw; for i in $(seq 40); do touch f$i; done; for f in *; do touch "n-$f"; done; ls | wc -l)"
    echo "listing: $(ls -A | tr '\n' ' ')"
    echo "mkfifo: $(mkfifo ff; stat -c %F ff)"
    echo "statfs: $(stat -f -c %l . )"
    cd /
}

behaviours "$v" > /tmp/virtiod.txt 2>&1
behaviours "$k" > /tmp/kernel.txt 2>&1
n=$(wc -l < /tmp/kernel.txt)
[ "$n" -ge 25 ] || fail "only $n behaviours ran on v9fs: $(head -c 300 /tmp/kernel.txt)"
differences=$(diff /tmp/kernel.txt /tmp/virtiod.txt | grep '^[<>]' || true)
if [ -n "$differences" ]; then
    echo "$differences" | sed 's/^</VIRTIOD-LOG v9fs   /; s/^>/VIRTIOD-LOG virtiod/'
    fail "$(echo "$differences" | grep -c '^>') of $n behaviours differ from v9fs: $(echo "$differences" | grep '^>' | cut -c3- | cut -d: -f1 | tr '\n' ' ')"
fi
echo "VIRTIOD-LOG 9p posix: $n behaviours equal to v9fs"
rm -rf "$v/posix" "$k/posix"
