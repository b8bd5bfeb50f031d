/* hello: prints with stdio and exits 0.
 *
 * Expected: exit 0 (no FAULTLINE_EXPECT: the default).
 * Why: musl's start-up is the real test: it reads auxv (AT_PHDR for TLS, AT_RANDOM for the
 * stack protector, AT_PAGESZ), sets the thread pointer with arch_prctl, calls set_tid_address,
 * and stdio probes stdout with ioctl(TIOCGWINSZ) and writes with writev. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    printf("hello from musl: argc %d, argv[0] %s, pid %d\n", argc, argc > 0 ? argv[0] : "?", (int)getpid());
    return 0;
}
