// Header-only shim for Linux calls that Swift's Glibc module does not import
// (they need _GNU_SOURCE, or are macros). Keep it to thin static inline wrappers.
#ifndef CVIRTIO_SHIM_H
#define CVIRTIO_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <fcntl.h>
#include <spawn.h>

static inline int cvirtio_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}
static inline int cvirtio_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
// glibc >= 2.34: the child closes every fd from `low` up (after the dup2s).
static inline int cvirtio_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int low) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}
static inline int cvirtio_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }
static inline unsigned int cvirtio_MFD_CLOEXEC(void) { return MFD_CLOEXEC; }
static inline unsigned int cvirtio_MFD_ALLOW_SEALING(void) { return MFD_ALLOW_SEALING; }
static inline int cvirtio_EFD_CLOEXEC(void) { return EFD_CLOEXEC; }
static inline int cvirtio_EFD_NONBLOCK(void) { return EFD_NONBLOCK; }
#include <stdint.h>
#include <stddef.h>

// libFuzzer's entry point for programs that own main (defined only when
// linked with -sanitize=fuzzer; used only by the FUZZING build of virtio-ring-fuzz).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
#endif
