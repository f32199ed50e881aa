"""The one error type for bad user input.

Every stage raises `InputError` for input a user can fix (a bad file, a bad field, a bad option);
the CLI prints its one-line message on stderr and exits 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: `str(err)` is one line naming the place, the field and what was expected.

    >>> str(InputError("expected a string, got int", where="data.jsonl:3", field="chosen"))
    "data.jsonl:3: field 'chosen': expected a string, got int"
    """

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None):
        self.message = message
        self.where = where
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.where:
            parts.append(self.where)
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(" ".join(self.message.split()))  # always one line
        return ": ".join(parts)


class InputErrors(InputError):
    """Several problems found at once (a train config with many bad keys): `errors` holds one InputError each,
    and `str(err)` is their lines, one per problem. The CLI prints each line as its own `error:` line.

    >>> print(InputErrors([InputError("unknown key", where="c.yaml", field="lr"),
    ...                    InputError("Input should be greater than 0", where="c.yaml", field="optim.lr")]))
    c.yaml: field 'lr': unknown key
    c.yaml: field 'optim.lr': Input should be greater than 0
    """

    def __init__(self, errors: list[InputError]):
        if not errors:
            raise ValueError("InputErrors needs at least one error")
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, where=first.where, field=first.field)

    def _format(self) -> str:
        return "\n".join(str(err) for err in self.errors)
