# make install put the default configuration in place, and it claims nothing:
# no uncommented [Device] section.
source /payload/cases/lib.sh
[ -f /etc/virtiod/virtiod.conf ] || fail "/etc/virtiod/virtiod.conf not installed"
! grep -q '^\[Device\]' /etc/virtiod/virtiod.conf || fail "the default configuration claims devices"
grep -q '^#\[Device\]' /etc/virtiod/virtiod.conf || fail "the default configuration lost its example"
