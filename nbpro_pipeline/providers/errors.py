"""One error taxonomy for both providers.

The engine decides what to do from the class alone (retry, slow down, stop the cell, record the row
as failed), so every documented code and envelope of both APIs maps onto exactly one class here.
Messages carry the provider's own words and request id but never a credential: callers build them
from response bodies, which never echo keys, and from URLs, which never hold them.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class. ``retryable`` says whether the same call may simply be made again."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        polls: int = 0,
    ) -> None:
        self.message = message
        self.polls = polls  # status requests made before this error (wait() sets it): reports count real polls
        self.provider = provider
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.provider}: {self.message}"]
        detail = ", ".join(
            f"{k}={v}"
            for k, v in (("http", self.status_code), ("code", self.code), ("request_id", self.request_id))
            if v is not None
        )
        return f"{parts[0]} ({detail})" if detail else parts[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._render()!r})"


class RetryableError(ProviderError):
    """5xx, 503 public_api_disabled, dropped connections, timeouts on safe calls: try again later."""

    retryable = True


class RateLimitedError(RetryableError):
    """429. ``retry_after`` is the server's Retry-After in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class InsufficientFundsError(ProviderError):
    """Rivya 402 insufficient_credits / OdiRouter 402 INSUFFICIENT_BALANCE: nothing was created or charged.

    Not retryable: every further call would fail the same way until someone tops up.
    """


class InvalidRequestError(ProviderError):
    """400/422 and Rivya's other 4xx request errors: the request itself is wrong, retrying cannot help."""


class IdempotencyConflictError(InvalidRequestError):
    """Rivya 409: the Idempotency-Key was already used with a different body."""


class NotFoundError(ProviderError):
    """404: unknown task, file or request id."""


class AuthError(ProviderError):
    """401/403: key missing, invalid, revoked, expired, or lacking scope."""


class SubmitOutcomeUnknown(ProviderError):
    """A create was sent but no answer came back (read timeout, dropped connection).

    On OdiRouter, which has no idempotency key, a task may exist and may be billed: resubmitting
    could pay twice. The engine must record this, not retry blindly.
    """


class ResultExpiredError(ProviderError):
    """A result URL answered that it has expired; fetch the task again for a fresh URL."""

    retryable = True


class DeadlineExceededError(ProviderError):
    """The task did not finish within the caller's deadline (on OdiRouter a cancel was requested)."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        cancel_status: str | None = None,
        last_state: str | None = None,
        billed: bool | None = None,
        **kw,
    ) -> None:
        self.task_id = task_id
        self.cancel_status = cancel_status
        self.last_state = last_state  # queued/running at the last poll: a cancelled running task is billed
        self.billed = billed  # the provider's word after the cancel, when it gave one (beats last_state)
        super().__init__(message, **kw)


class UnsupportedOperationError(ProviderError):
    """The provider's API has no such operation (Rivya cancel, OdiRouter uploads and balance)."""


class InvalidReferenceError(InvalidRequestError):
    """A reference image failed a local check before upload (type from magic bytes, size)."""


class UnreadableResultError(ProviderError):
    """The provider said the task is finished but its result (or status) body has a shape this client
    does not know.

    Nothing paid for may be lost on that account: ``snapshot`` is the terminal snapshot the provider gave
    (when ``snapshot.state`` is SUCCEEDED the task is billable and is booked at its price), ``raw_body``
    is the body as received (the engine keeps it under ``quarantine/``), and the task stays resumable so
    the next run polls it again instead of resubmitting.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        raw_body: bytes,
        content_type: str | None = None,
        snapshot: object | None = None,  # a providers.base.TaskSnapshot; typed loosely to avoid an import cycle
        **kw,
    ) -> None:
        self.task_id = task_id
        self.raw_body = raw_body
        self.content_type = content_type
        self.snapshot = snapshot
        super().__init__(message, **kw)


class AnswerTooLargeError(ProviderError):
    """An answer or result image larger than its cap (``AnswerBounds``): reading stopped at the cap."""


class UnsafeTaskIdError(ProviderError):
    """The provider named its task with an id that cannot go into a URL path (a slash, ``..``, a space):
    the task is booked under it at its list price, but never polled by a path built from it."""
