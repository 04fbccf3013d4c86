// Thin C wrappers for Linux calls that Swift cannot import directly (they
// need _GNU_SOURCE, are variadic, or are macros).
//
// Rule: this header must not define _GNU_SOURCE nor include headers whose
// contents change with it. Swift's Glibc module is built without it, and a
// second, different definition of a libc struct (fd_set, ...) in this module
// is a hard "not present in definition" error on a cold module cache. The
// definitions live in shim.c, which is compiled with _GNU_SOURCE.
#ifndef CVIRTIO_SHIM_H
#define CVIRTIO_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <spawn.h>
#include <sys/types.h>
#include <linux/vfio.h>

int cvirtio_memfd_create(const char *name, unsigned int flags);
int cvirtio_pipe2(int fds[2], int flags);
// glibc >= 2.34: the child closes every fd from `low` up (after the dup2s).
int cvirtio_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int low);
int cvirtio_eventfd(unsigned int initval, int flags);
unsigned int cvirtio_MFD_CLOEXEC(void);
unsigned int cvirtio_MFD_ALLOW_SEALING(void);
unsigned int cvirtio_MFD_HUGETLB(void);
// Whether fd's file lives on hugetlbfs (fstatfs f_type == HUGETLBFS_MAGIC): 1, 0, or -1 (errno).
int cvirtio_is_hugetlbfs(int fd);
// Seal a memfd's size (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): no process
// holding it — a plugin — can truncate it under a mapping (SIGBUS for the
// others) or grow it. cvirtio_memfd_seals returns the seals (F_GET_SEALS).
int cvirtio_memfd_seal_size(int fd);
int cvirtio_memfd_seals(int fd);
// Memory of a memfd by ranges: give back (fallocate with
// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) and find what is allocated
// (lseek SEEK_DATA / SEEK_HOLE). -1 and errno on failure.
int cvirtio_punch_hole(int fd, long long offset, long long length);
long long cvirtio_seek_data(int fd, long long offset);
long long cvirtio_seek_hole(int fd, long long offset);
// An epoll fd watching `fd` for EPOLLPRI only (a PSI trigger reports POLLIN
// always and POLLPRI on events): the epoll fd is readable when an event
// waits. cvirtio_epoll_take consumes what waits (without blocking): the count.
int cvirtio_epoll_priority(int fd);
int cvirtio_epoll_take(int epfd);
int cvirtio_EFD_CLOEXEC(void);
int cvirtio_EFD_NONBLOCK(void);

// One message with file descriptors attached (SCM_RIGHTS); the CMSG_* macros
// do not import into Swift. Received fds are close-on-exec. Returns bytes
// sent/received or -1 with errno; *nfds gets the number of fds received
// (fds beyond maxfds are closed and the call fails with EMSGSIZE).
ssize_t cvirtio_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
ssize_t cvirtio_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);
// Peer credentials of a connected unix socket (SO_PEERCRED).
int cvirtio_peer_credentials(int sock, int *pid, unsigned int *uid, unsigned int *gid);
// Block `signals` for this thread and return a signalfd (close-on-exec,
// non-blocking) that reports them; -1 with errno on failure.
int cvirtio_signalfd(const int *signals, int count);
// Read one signal from a signalfd: returns the signal number (and the sender
// pid / child pid in *pid), 0 if none is pending, -1 with errno.
int cvirtio_signalfd_read(int fd, int *pid);
// Put back the default signal mask in a spawned child.
int cvirtio_spawnattr_default_signals(posix_spawnattr_t *attr);
/// prctl(PR_SET_NO_NEW_PRIVS, 1): this process and its children can never gain privilege.
int cvirtio_no_new_privs(void);
/* PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE): 0 or -1 (errno). */
int cvirtio_set_io_flusher(void);
/* Clear every capability (ambient, effective, permitted, inheritable) if
 * any is held: 0, or -1 (errno). */
int cvirtio_drop_capabilities(void);

// TAP (Documentation/networking/tuntap.rst). Open /dev/net/tun and attach
// a TAP interface named `name` (a template such as "vtnet%d" is allowed)
// with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (+IFF_MULTI_QUEUE); `exclusive` adds
// IFF_TUN_EXCL (EBUSY if the interface exists: never join another's TAP);
// the chosen name is copied to `out_name` (16 bytes). Returns the fd
// (close-on-exec, non-blocking) or -1 with errno.
int cvirtio_tap_open(const char *name, int multi_queue, int exclusive, char *out_name);
// ioctls on a TAP fd: vnet header size, offload flags (TUN_F_*), carrier.
int cvirtio_tap_set_vnet_header_size(int fd, int size);
int cvirtio_tap_set_offload(int fd, unsigned int flags);
int cvirtio_tap_set_carrier(int fd, int on);
// Interface attributes through the ioctls of an AF_UNIX datagram socket.
int cvirtio_if_set_hwaddr(const char *ifname, const unsigned char mac[6]);
int cvirtio_if_set_mtu(const char *ifname, int mtu);

// timerfd (timerfd_create(2)): a monotonic timer as an fd, close-on-exec and
// non-blocking. Arm it to fire after `first_ns` and then every `interval_ns`
// (0: once); first_ns 0 disarms it.
int cvirtio_timerfd_create(void);
int cvirtio_timerfd_arm(int fd, long long first_ns, long long interval_ns);

// pidfds (pidfd_open(2), pidfd_send_signal(2)): a process followed by an fd
// that turns readable when it exits, whoever its parent is; signalling
// through it cannot hit a recycled pid. -1 with errno on failure.
int cvirtio_pidfd_open(int pid);
int cvirtio_pidfd_send_signal(int pidfd, int sig);

// Pseudo-terminals (pty(7), ioctl_tty(2)). `cvirtio_pty_open` opens a new
// master (/dev/ptmx: close-on-exec, non-blocking, no controlling tty),
// unlocks it and stores its number (/dev/pts/N); `cvirtio_pty_open_peer`
// opens its slave through the master (TIOCGPTPEER: no path lookup).
// `raw`: cfmakeraw on the slave's termios (binary streams pass unchanged);
// otherwise the usual cooked settings of a fresh terminal stay.
// Window sizes are rows × cols (TIOCSWINSZ/TIOCGWINSZ). -1 with errno.
int cvirtio_pty_open(int *number);
int cvirtio_pty_open_peer(int master);
int cvirtio_pty_number(int master, int *number);
int cvirtio_pty_set_raw(int fd, int raw);
int cvirtio_pty_set_window(int fd, unsigned short rows, unsigned short cols);
int cvirtio_pty_get_window(int fd, unsigned short *rows, unsigned short *cols);

// inotify(7): an fd of events, close-on-exec and non-blocking.
int cvirtio_inotify_init(void);
int cvirtio_inotify_add_watch(int fd, const char *path, unsigned int mask);
int cvirtio_inotify_rm_watch(int fd, int wd);
unsigned int cvirtio_IN_OPEN(void);

// major(3)/minor(3) of a device number (macros Swift does not import).
unsigned int cvirtio_dev_major(unsigned long dev);
unsigned int cvirtio_dev_minor(unsigned long dev);

// mallopt(3): freed blocks below `mmap_threshold` come from (and stay in)
// the heap, which is trimmed only past `trim_threshold` free bytes.
int cvirtio_malloc_keep(int mmap_threshold, int trim_threshold);

// libFuzzer's entry point for programs that own main (defined only when
// linked with -sanitize=fuzzer; used only by the FUZZING build of virtio-ring-fuzz).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
#endif
