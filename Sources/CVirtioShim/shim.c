// Definitions for include/CVirtioShim.h. _GNU_SOURCE is defined here only,
// never in the header (see the rule there).
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <fcntl.h>
#include <spawn.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <signal.h>
#include <string.h>
#include <errno.h>
#include <sys/prctl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/inotify.h>
#include <sys/epoll.h>
#include <termios.h>
#include <stdlib.h>
#include <malloc.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include "CVirtioShim.h"

int cvirtio_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }
int cvirtio_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}
long long cvirtio_seek_data(int fd, long long offset) { return lseek(fd, offset, SEEK_DATA); }
long long cvirtio_seek_hole(int fd, long long offset) { return lseek(fd, offset, SEEK_HOLE); }
int cvirtio_epoll_priority(int fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    struct epoll_event ev = { .events = EPOLLPRI, .data.fd = fd };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) { int e = errno; close(ep); errno = e; return -1; }
    return ep;
}
int cvirtio_epoll_take(int epfd) {
    struct epoll_event ev[4];
    return epoll_wait(epfd, ev, 4, 0);
}
int cvirtio_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int cvirtio_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int low) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}
int cvirtio_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }
unsigned int cvirtio_MFD_CLOEXEC(void) { return MFD_CLOEXEC; }
unsigned int cvirtio_MFD_ALLOW_SEALING(void) { return MFD_ALLOW_SEALING; }
unsigned int cvirtio_MFD_HUGETLB(void) { return MFD_HUGETLB; }
int cvirtio_is_hugetlbfs(int fd) {
    struct statfs st;
    if (fstatfs(fd, &st) != 0) return -1;
    return st.f_type == HUGETLBFS_MAGIC ? 1 : 0;
}
int cvirtio_EFD_CLOEXEC(void) { return EFD_CLOEXEC; }
int cvirtio_EFD_NONBLOCK(void) { return EFD_NONBLOCK; }

#define CVIRTIO_MAX_FDS 64

ssize_t cvirtio_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > CVIRTIO_MAX_FDS) { errno = EINVAL; return -1; }
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * CVIRTIO_MAX_FDS)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t cvirtio_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * CVIRTIO_MAX_FDS)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                          .msg_controllen = sizeof control.buf };
    *nfds = 0;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    int overflow = (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds && !overflow) fds[(*nfds)++] = data[i];
            else { close(data[i]); overflow = 1; }
        }
    }
    if (overflow) {
        for (int i = 0; i < *nfds; i++) close(fds[i]);
        *nfds = 0;
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

int cvirtio_peer_credentials(int sock, int *pid, unsigned int *uid, unsigned int *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid; *uid = cred.uid; *gid = cred.gid;
    return 0;
}

int cvirtio_signalfd(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int cvirtio_signalfd_read(int fd, int *pid) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n < 0) return (errno == EAGAIN) ? 0 : -1;
    if (n != sizeof info) { errno = EIO; return -1; }
    *pid = (int)info.ssi_pid;
    return (int)info.ssi_signo;
}

int cvirtio_spawnattr_default_signals(posix_spawnattr_t *attr) {
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    if (posix_spawnattr_setsigmask(attr, &empty) != 0) return -1;
    if (posix_spawnattr_setsigdefault(attr, &all) != 0) return -1;
    return posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

int cvirtio_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
int cvirtio_set_io_flusher(void) { return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0); }

int cvirtio_drop_capabilities(void) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    int held = 0;
    for (int i = 0; i < 2; i++) held |= data[i].effective | data[i].permitted | data[i].inheritable;
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (!held) return 0;
    memset(data, 0, sizeof data);
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -1;
}

int cvirtio_tap_open(const char *name, int multi_queue, int exclusive, char *out_name) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0) | (exclusive ? IFF_TUN_EXCL : 0);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { int e = errno; close(fd); errno = e; return -1; }
    memcpy(out_name, ifr.ifr_name, IFNAMSIZ);
    out_name[IFNAMSIZ - 1] = 0;
    return fd;
}
int cvirtio_tap_set_vnet_header_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }
int cvirtio_tap_set_offload(int fd, unsigned int flags) { return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags); }
int cvirtio_tap_set_carrier(int fd, int on) { return ioctl(fd, TUNSETCARRIER, &on); }

/* Interface ioctls (SIOCSIFHWADDR, SIOCSIFMTU) reach dev_ioctl through any
 * socket: an AF_UNIX one, so virtiod needs no IP socket family at all. */
static int if_ioctl(unsigned long request, struct ifreq *ifr) {
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    int rc = ioctl(s, request, ifr);
    int e = errno;
    close(s);
    errno = e;
    return rc;
}
int cvirtio_if_set_hwaddr(const char *ifname, const unsigned char mac[6]) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
    return if_ioctl(SIOCSIFHWADDR, &ifr);
}
int cvirtio_if_set_mtu(const char *ifname, int mtu) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_mtu = mtu;
    return if_ioctl(SIOCSIFMTU, &ifr);
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
int cvirtio_pidfd_open(int pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}
int cvirtio_pidfd_send_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

int cvirtio_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK); }
int cvirtio_timerfd_arm(int fd, long long first_ns, long long interval_ns) {
    struct itimerspec spec = {
        .it_interval = { .tv_sec = interval_ns / 1000000000LL, .tv_nsec = interval_ns % 1000000000LL },
        .it_value = { .tv_sec = first_ns / 1000000000LL, .tv_nsec = first_ns % 1000000000LL },
    };
    return timerfd_settime(fd, 0, &spec, NULL);
}

int cvirtio_memfd_seal_size(int fd) { return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL); }
int cvirtio_memfd_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

int cvirtio_pty_open(int *number) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -1;
    unsigned int n = 0;
    if (unlockpt(fd) != 0 || ioctl(fd, TIOCGPTN, &n) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *number = (int)n;
    return fd;
}
int cvirtio_pty_open_peer(int master) { return ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK); }
int cvirtio_pty_number(int master, int *number) {
    unsigned int n = 0;
    if (ioctl(master, TIOCGPTN, &n) != 0) return -1;
    *number = (int)n;
    return 0;
}
int cvirtio_pty_set_raw(int fd, int raw) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0) return -1;
    if (raw) {
        cfmakeraw(&t);
    } else {
        // A fresh terminal's settings (the kernel's tty_std_termios), as `stty sane`.
        t.c_iflag = ICRNL | IXON | IUTF8;
        t.c_oflag = OPOST | ONLCR;
        t.c_cflag = (t.c_cflag & ~(CSIZE | PARENB)) | CS8 | CREAD | HUPCL;
        t.c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN;
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
    }
    return tcsetattr(fd, TCSANOW, &t);
}
int cvirtio_pty_set_window(int fd, unsigned short rows, unsigned short cols) {
    struct winsize w = { .ws_row = rows, .ws_col = cols };
    return ioctl(fd, TIOCSWINSZ, &w);
}
int cvirtio_pty_get_window(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize w;
    if (ioctl(fd, TIOCGWINSZ, &w) != 0) return -1;
    *rows = w.ws_row;
    *cols = w.ws_col;
    return 0;
}

int cvirtio_inotify_init(void) { return inotify_init1(IN_CLOEXEC | IN_NONBLOCK); }
int cvirtio_inotify_add_watch(int fd, const char *path, unsigned int mask) { return inotify_add_watch(fd, path, mask); }
int cvirtio_inotify_rm_watch(int fd, int wd) { return inotify_rm_watch(fd, wd); }
unsigned int cvirtio_IN_OPEN(void) { return IN_OPEN; }

int cvirtio_malloc_keep(int mmap_threshold, int trim_threshold) {
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) && mallopt(M_TRIM_THRESHOLD, trim_threshold) ? 0 : -1;
}

unsigned int cvirtio_dev_major(unsigned long dev) { return major(dev); }
unsigned int cvirtio_dev_minor(unsigned long dev) { return minor(dev); }
