/* bad_note_escape: an expectation note that is not an expectation and carries escape sequences.
 *
 * Expected: rejected with the reason, the note's text and word shown escaped (run by
 * tests/hostile.rs, not in the catalogue: a rejection is a `not ok` line).
 * Why: the words of a rejected note are echoed to the console; raw, they could clear the
 * screen and paint a fake verdict. */
#include "faultline.h"

FAULTLINE_EXPECT("killed \x1b[2J\x1b[1;32mTest result: SUCCESS");

int main(void)
{
    return 0;
}
