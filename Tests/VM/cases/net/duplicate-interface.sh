# Two NICs given the same InterfaceName= would share one TAP and mix their
# traffic: the configuration is refused at load with the file and line of
# the second, and virtiod keeps its last good configuration.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
conf=/etc/virtiod/virtiod.conf.d/50-test.conf
start_virtiod "[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
InterfaceName=vtnet0

[Device]
MACAddress=52:54:00:12:34:02
Claim=yes
InterfaceName=vtnet0"
wait_for "journalctl -u virtiod --no-pager -o cat | grep -q '$conf:9: InterfaceName=vtnet0 is already given at $conf:4'" 20 \
    || fail "no error naming $conf:9: $(journalctl -u virtiod --no-pager -o cat | grep -i error | tail -n 3)"
journalctl -u virtiod --no-pager -o cat | grep -m1 "$conf:9"
[ -z "$(claimed_nic)" ] || fail "a NIC was claimed with the broken configuration"
systemctl show -P StatusText virtiod | grep -q "config error: $conf:9" || fail "status: $(systemctl show -P StatusText virtiod)"
