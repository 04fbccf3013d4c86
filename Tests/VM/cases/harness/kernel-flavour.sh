# The guest runs the kernel the run asked for: Debian 12's stock 6.1 (no
# ublk), or bookworm-backports (6.x with CONFIG_BLK_DEV_UBLK, for the block
# plugin's ublk path).
source /payload/cases/lib.sh
flavour=$(cat /payload/kernel-flavour)
release=$(uname -r)
major=$(echo "$release" | cut -d. -f1); minor=$(echo "$release" | cut -d. -f2)
case $flavour in
    stock)
        [ "$major.$minor" = 6.1 ] || fail "stock image runs $release, expected 6.1"
        ! modprobe ublk_drv 2>/dev/null || fail "stock kernel unexpectedly has ublk_drv"
        ;;
    backports)
        [ "$major" -ge 6 ] && [ "$minor" -gt 1 ] || fail "backports image runs $release"
        modprobe ublk_drv || fail "backports kernel $release has no ublk_drv"
        wait_for "[ -c /dev/ublk-control ]" 5 || fail "/dev/ublk-control missing on $release"
        ;;
    *) fail "unknown kernel flavour '$flavour'" ;;
esac
