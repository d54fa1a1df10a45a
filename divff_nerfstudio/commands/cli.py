"""How every `divff-*` command ends on a user error: one line that names the file and the problem,
exit status 2, no traceback (set DIVFF_TRACEBACK=1 to see it).

User errors are what the library raises for input it cannot use: malformed scenes and annotations,
missing files, frame ids or queries a run does not have, weights that cannot be had, a full disk.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Tuple, Type

from nerfstudio.utils.rich_utils import CONSOLE
from rich.text import Text

from divff_nerfstudio.utils.errors import UserError

USAGE_ERROR_STATUS = 2


USER_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, OSError, UserError)
"""ValueError covers malformed scenes and annotations, unknown frame ids and unaskable queries;
OSError missing or unwritable files; UserError the library's own failures a user can act on."""


def run_command(main: Callable[[], object]) -> None:
    """Run a command's main; a user error becomes one red line and exit status 2."""
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("DIVFF_TRACEBACK"):
            raise
        CONSOLE.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        sys.exit(USAGE_ERROR_STATUS)
