"""Writing result files so that a reader never sees a half-written one."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary path beside ``path`` that becomes ``path`` once written.

    Write the file to the yielded path inside the ``with`` block. When the
    block ends normally the file is made readable by everyone and renamed onto
    ``path`` in one step; when it raises, the temporary file is removed and
    ``path`` is left as it was.

    Parameters
    ----------
    path
        The final file name; its folder is created if missing.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so the rename stays on one file system.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    os.close(descriptor)
    temporary = pathlib.Path(temporary)
    try:
        yield temporary
        # mkstemp makes the file private to its owner; results are for sharing.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
