# `make install DESTDIR=…` put static release binaries into the guest; they
# run without a Swift toolchain and print their figures.
source /payload/cases/lib.sh
bin=/usr/libexec/virtiod/virtio-ring-bench
[ -x "$bin" ] || fail "$bin not installed"
! ldd "$bin" | grep -q libswift || fail "$bin links Swift runtime libraries dynamically"
out=$("$bin" --seconds 0.02 --json) || fail "$bin failed: $out"
echo "$out" | grep -q '"layout":"packed","batch":32' || fail "unexpected output: $out"
