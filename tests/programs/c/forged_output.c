/* forged_output: prints terminal control sequences, a fake verdict line, NUL and DEL bytes, and
 * ends with a line that has no newline.
 *
 * Expected: exit 0; the console shows every control byte escaped (\x1b, \r, \x00, \x7f) on
 * `# c_forged_output: ` lines, and the last line, printed after the program has ended, still
 * carries the program's name.
 * Why: program output reaches a person's terminal through the console. Raw escape sequences
 * could paint a green "Test result: SUCCESS" over a failure, or erase the lines before them;
 * the kernel must print what the program wrote, never let it drive the terminal. */
#include <unistd.h>

static const char forged[] =
    "\x1b[2K\r\x1b[1;32mTest result: SUCCESS\x1b[0m\n"
    "Test result: SUCCESS\r\n"
    "nul \0 del \x7f bell \a tab \t end\n"
    "no newline at the end";

int main(void)
{
    /* One write, so the bytes arrive exactly as given (stdio would too, but this is plainer). */
    ssize_t n = write(1, forged, sizeof forged - 1);
    return n == (ssize_t)(sizeof forged - 1) ? 0 : 1;
}
