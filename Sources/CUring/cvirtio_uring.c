#include "cvirtio_uring.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>

struct cvirtio_ring { struct io_uring ring; };

struct cvirtio_ring *cvirtio_ring_new(unsigned entries, int *error) {
    struct cvirtio_ring *r = calloc(1, sizeof *r);
    if (!r) { *error = -ENOMEM; return NULL; }
    int e = io_uring_queue_init(entries, &r->ring, IORING_SETUP_SQE128);
    if (e < 0) { free(r); *error = e; return NULL; }
    return r;
}

void cvirtio_ring_free(struct cvirtio_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

int cvirtio_ring_command(struct cvirtio_ring *r, int fd, uint32_t op, const void *cmd, size_t len, uint64_t user_data) {
    if (len > 80) return -EINVAL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    // The whole 128-byte entry: the command bytes follow the first 48.
    memset(sqe, 0, 128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fd;
    sqe->cmd_op = op;
    memcpy(sqe->cmd, cmd, len);
    sqe->user_data = user_data;
    return 0;
}

int cvirtio_ring_submit(struct cvirtio_ring *r) { return io_uring_submit(&r->ring); }

static void take(struct cvirtio_ring *r, struct io_uring_cqe *cqe, uint64_t *user_data, int32_t *result) {
    *user_data = cqe->user_data;
    *result = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
}

int cvirtio_ring_reap(struct cvirtio_ring *r, uint64_t *user_data, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    if (io_uring_peek_cqe(&r->ring, &cqe) != 0 || !cqe) return 0;
    take(r, cqe, user_data, result);
    return 1;
}

int cvirtio_ring_wait(struct cvirtio_ring *r, unsigned timeout_ms, uint64_t *user_data, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    struct __kernel_timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000 };
    int e = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
    if (e == -ETIME) return 0;
    if (e < 0) return e;
    if (!cqe) return 0;
    take(r, cqe, user_data, result);
    return 1;
}

int cvirtio_ring_register_eventfd(struct cvirtio_ring *r, int fd) { return io_uring_register_eventfd(&r->ring, fd); }
