"""The error raised for input data that cannot be used as given."""

from __future__ import annotations

import os


class DataValidationError(ValueError):
    """Input data that bayesude cannot use, with where the problem is and the fix.

    The message names the file, the subject and the field (column, variable or
    attribute) when they are known, says what is wrong and how to fix it. The
    same pieces are kept as attributes, so a batch can record which subject
    failed and go on with the others.

    Parameters
    ----------
    problem
        What is wrong, as a sentence.
    fix
        What to change, as a sentence.
    file, subject, field
        Where the problem is; None where it does not apply.
    """

    def __init__(
        self,
        problem: str,
        fix: str,
        *,
        file: str | os.PathLike | None = None,
        subject: str | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.fix = fix
        self.file = None if file is None else os.fspath(file)
        self.subject = subject
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file!r}")
        if self.subject is not None:
            where.append(f"subject {self.subject!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = f"In {', '.join(where)}: " if where else ""
        return f"{prefix}{self.problem} {self.fix}"
