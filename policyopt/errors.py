"""User-facing errors.

Every mistake a user can make in a spec, a CSV or a command line raises :class:`SpecError`.
The CLI prints it as one line (``policyopt: error: <field>: <problem>; <fix>``) and exits with
code 2; Python callers get the exception with the same text.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A bad input, with the field it concerns and how to fix it.

    ``field`` is a dotted path (``workload.prompt.mean``) or a file location
    (``trace.csv line 7``); ``problem`` says what is wrong; ``fix`` says what to do.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"{field}: {problem}" if field else problem
        if fix:
            text += f"; {fix}"
        super().__init__(text)
