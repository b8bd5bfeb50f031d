/* kernel_pointers: hands the kernel's own addresses (and addresses that wrap or straddle the top
 * of user space) to every system call that takes a pointer.
 *
 * Expected: exit 0 (each call returns the errno Linux gives; the program prints the wrong ones).
 * Why: the kernel reads and writes user memory for the program; an address in the kernel image
 * must be EFAULT (or EPERM where Linux says so), never read, written or faulted on. */
#include <errno.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "faultline.h"

/* Linux arch/x86/include/uapi/asm/prctl.h (musl ships no kernel headers). */
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003

static int failures;

static void expect(const char *what, long result, long want)
{
    long got = result < 0 ? -errno : result;
    if (got != want) {
        printf("%s: got %ld, want %ld\n", what, got, want);
        failures++;
    }
}

int main(void)
{
    unsigned long kernel = getauxval(AT_FAULTLINE_KERNEL_ADDRESS);
    if (kernel == 0)
        kernel = 0xffffffff80000000UL; /* natively: Linux's kernel text is there too */
    const unsigned long top = 0x00007ffffffff000UL;
    struct iovec iov = {(void *)kernel, 8};

    expect("write from the kernel", syscall(SYS_write, 1, kernel, 8), -EFAULT);
    expect("write wrapping around", syscall(SYS_write, 1, -4096L, 8192), -EFAULT);
    expect("write across the top of user space", syscall(SYS_write, 1, top - 4, 4096), -EFAULT);
    expect("writev of a kernel buffer", syscall(SYS_writev, 1, &iov, 1), -EFAULT);
    expect("writev with the iovec array in the kernel", syscall(SYS_writev, 1, kernel, 1), -EFAULT);
    expect("clock_gettime into the kernel", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, kernel), -EFAULT);
    expect("nanosleep reading the kernel", syscall(SYS_nanosleep, kernel, 0), -EFAULT);
    expect("arch_prctl GET_FS into the kernel", syscall(SYS_arch_prctl, ARCH_GET_FS, kernel), -EFAULT);
    expect("arch_prctl SET_FS to the kernel", syscall(SYS_arch_prctl, ARCH_SET_FS, kernel), -EPERM);
    printf("kernel_pointers: %d wrong result(s)\n", failures);
    return failures != 0;
}
