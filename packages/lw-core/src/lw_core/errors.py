"""One error hierarchy for every lw package, so callers can catch ``LWError`` once."""

from __future__ import annotations


class LWError(Exception):
    """Base of every error lw raises on purpose: the message says what, where and what to do."""


class RecordError(LWError):
    """A record in a file is malformed; the message names ``file:line`` and the field.

    >>> error = RecordError("tasks.jsonl", 3, "length", "Input should be greater than or equal to 1")
    >>> print(error)
    tasks.jsonl:3: field 'length': Input should be greater than or equal to 1
    >>> isinstance(error, LWError), error.line
    (True, 3)
    """

    def __init__(self, path: str, line: int, field: str | None, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        where = f"{path}:{line}" + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class ClientError(LWError):
    """An LLM call failed for good (after retries), or the request itself was invalid.

    ``status_code`` is the HTTP status of the last attempt (None for transport errors), ``retryable`` says whether
    the failure was of a kind worth retrying (so "retries exhausted" and "the request is wrong", e.g. a context
    overflow, are told apart without parsing the message), and ``attempts`` how many HTTP attempts were made.

    >>> error = ClientError("HTTP 400: maximum context length exceeded", status_code=400)
    >>> error.status_code, error.retryable, error.attempts
    (400, False, 1)
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, retryable: bool = False, attempts: int = 1
    ) -> None:
        super().__init__(message)
        self.status_code, self.retryable, self.attempts = status_code, retryable, attempts
