/* writev_flood: one writev(2) of 1024 iovecs over the same 1 MiB buffer (1 GiB of output).
 *
 * Expected: killed by watchdog (run with a short test_time, tests/hostile.rs).
 * Why: a single system call can ask the kernel for far more work than the program's whole
 * budget; the kernel must check the deadline while it works, not only between system calls. */
#include <sys/uio.h>
#include <unistd.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed watchdog");

static char buffer[1 << 20];
static struct iovec iov[1024];

int main(void)
{
    for (size_t i = 0; i < sizeof buffer; i++)
        buffer[i] = "flood "[i % 6];
    for (int i = 0; i < 1024; i++)
        iov[i] = (struct iovec){buffer, sizeof buffer};
    writev(1, iov, 1024);
    return 0;
}
