# Bad configuration never changes the service's state: drop-ins of random
# bytes, NUL bytes, a 10 MB line and very long lines each make `systemctl
# reload virtiod` return within 5 s with the unit active, the journal naming
# file:line with the offending text cut short, and the last good
# configuration still in force; removing the file and reloading restores normal.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
conf=/etc/virtiod/virtiod.conf.d/90-garbage.conf
start_virtiod "[Device]
Serial=virtiod-blk0
Claim=yes"
blk=$(virtio_functions 1042)
wait_state "$blk" running 60
check() {
    local what=$1 t0 s ms
    t0=$(date +%s)
    s=$(date +%s%N)
    reload_virtiod
    ms=$(( ($(date +%s%N) - s) / 1000000 ))
    [ $ms -lt 5000 ] || fail "$what: reload took $ms ms"
    wait_for "journalctl -u virtiod --since @$t0 --no-pager -o cat | grep -q 'configuration error: $conf:'" 10 \
        || fail "$what: no error naming $conf: $(journalctl -u virtiod --since @$t0 --no-pager -o cat | tail -n 2 | cut -c1-300)"
    local line
    line=$(journalctl -u virtiod --since @$t0 --no-pager -o cat | grep -m1 "configuration error: $conf:")
    [ ${#line} -lt 600 ] || fail "$what: the error line is ${#line} characters long"
    systemctl show -P StatusText virtiod | grep -q "config error: $conf:" || fail "$what: status text $(systemctl show -P StatusText virtiod | cut -c1-200)"
    [ "$(vstate "$blk")" = running ] || fail "$what: the disk is $(vstate "$blk") (the last good configuration was lost)"
    echo "$what: reload in $ms ms; ${line:0:160}"
}
head -c 4096 /dev/urandom > "$conf"; check "random bytes"
printf '[Device]\nSerial=virtiod-blk0\0\0\nClaim=yes\n' > "$conf"; check "NUL bytes"
{ printf '[Device]\nSerial='; head -c 10000000 /dev/zero | tr '\0' x; printf '\n'; } > "$conf"; check "a 10 MB line"
{ printf '[Device]\nSerial='; head -c 6000 /dev/zero | tr '\0' y; printf '\nClaim=yes\n'; } > "$conf"; check "a 6000-character line"
{ printf '[Device]\nSerial=virtiod-blk0\nClaim=maybe'; printf '\033[31m%.0s' $(seq 300); printf '\n'; } > "$conf"; check "escape sequences"
rm -f "$conf"
t0=$(date +%s)
reload_virtiod
wait_for "systemctl show -P StatusText virtiod | grep -qv 'config error'" 10 || fail "the error stayed after the file was removed"
[ "$(vstate "$blk")" = running ] || fail "the disk is $(vstate "$blk") at the end"
