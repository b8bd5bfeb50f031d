/* writev_lengths: iovec lengths a hostile program may pass to writev.
 *
 * Expected: exit 0 (each result as Linux gives it; the program prints what it got).
 * Why: an iov_len with the top bit set is negative as ssize_t; Linux refuses it with EINVAL
 * before it looks at any buffer (lib/iov_iter.c, copy_iovec_from_user), whatever the buffer
 * address, and a total that cannot be represented must never wrap into a short count. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static int failures;

static void expect(const char *what, long got, long want)
{
    if (got != want) {
        printf("%s: got %ld, want %ld\n", what, got, want);
        failures++;
    }
}

static long raw_writev(const struct iovec *iov, long count)
{
    return syscall(SYS_writev, 1, iov, count) < 0 ? -errno : 0;
}

int main(void)
{
    static char ok[] = "writev_lengths: ";
    struct iovec iov[2];

    /* A negative length on a valid buffer. */
    iov[0] = (struct iovec){ok, 1UL << 63};
    expect("len 1<<63 on a valid buffer", raw_writev(iov, 1), -EINVAL);
    /* A negative length after a good iovec: nothing is written, EINVAL. */
    iov[0] = (struct iovec){ok, 4};
    iov[1] = (struct iovec){ok, (size_t)-1};
    expect("good iovec then len -1", raw_writev(iov, 2), -EINVAL);
    /* A negative length on a NULL buffer: EINVAL wins over EFAULT, as on Linux. */
    iov[0] = (struct iovec){NULL, 1UL << 63};
    expect("len 1<<63 on NULL", raw_writev(iov, 1), -EINVAL);
    /* Two halves of SSIZE_MAX that are each not negative, on an unmapped buffer: EFAULT. */
    iov[0] = (struct iovec){(void *)0x10000, 1UL << 62};
    iov[1] = (struct iovec){(void *)0x10000, 1UL << 62};
    expect("total 2^63 on unmapped memory", raw_writev(iov, 2), -EFAULT);
    /* Too many iovecs: EINVAL. */
    expect("iovcnt 1025", raw_writev(iov, 1025), -EINVAL);
    expect("iovcnt -1", raw_writev(iov, -1), -EINVAL);
    printf("writev_lengths: %d wrong result(s)\n", failures);
    return failures != 0;
}
