"""Writing a file that a reader sees whole or not at all."""

from __future__ import annotations

import os
from typing import Callable


def write_atomically(path: str, write: Callable[[str], object]) -> None:
    """Call ``write(temporary)``, then rename the temporary file over *path*.

    The temporary file is hidden in *path*'s directory (a rename is atomic
    only within one file system, and a directory listing skips it), named
    with the process id so that two processes never share it.  A reader of
    *path* sees the old file or the whole new one, never half of it; when
    *write* or the rename fails, the temporary file is removed and the error
    raised.
    """
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, ".%s.%d.tmp" % (name, os.getpid()))
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
