// A ring of liburing's behind an opaque handle. liburing's own header
// declares struct io_uring_sqe differently from <linux/io_uring.h>, which
// swift-system's module includes; only this C file sees liburing, Swift sees
// the functions below. Results are 0/positive or a negative errno.
#pragma once
#include <stddef.h>
#include <stdint.h>

struct cvirtio_ring;

/// A ring with 128-byte submission entries (IORING_SETUP_SQE128) and room
/// for `entries` submissions; NULL with *error set on failure.
struct cvirtio_ring *cvirtio_ring_new(unsigned entries, int *error);
void cvirtio_ring_free(struct cvirtio_ring *ring);
/// Queue an IORING_OP_URING_CMD for `fd` carrying `len` (at most 80) bytes
/// of command; -EBUSY when the submission queue is full.
int cvirtio_ring_command(struct cvirtio_ring *ring, int fd, uint32_t op, const void *cmd, size_t len, uint64_t user_data);
/// io_uring_submit: how many entries the kernel took.
int cvirtio_ring_submit(struct cvirtio_ring *ring);
/// The next completion without waiting: 1 (consumed) or 0.
int cvirtio_ring_reap(struct cvirtio_ring *ring, uint64_t *user_data, int32_t *result);
/// The next completion, waiting up to `timeout_ms`: 1 (consumed), 0 on timeout.
int cvirtio_ring_wait(struct cvirtio_ring *ring, unsigned timeout_ms, uint64_t *user_data, int32_t *result);
int cvirtio_ring_register_eventfd(struct cvirtio_ring *ring, int fd);
