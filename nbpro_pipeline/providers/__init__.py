"""Async clients for the two Nano Banana Pro providers behind one small interface (``ProviderClient``)."""

from nbpro_pipeline.providers.base import (
    Balance,
    CancelOutcome,
    DownloadedImage,
    ProviderClient,
    ResultImage,
    SubmittedTask,
    TaskSnapshot,
)
from nbpro_pipeline.providers.errors import (
    AuthError,
    DeadlineExceededError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidReferenceError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    ResultExpiredError,
    RetryableError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.odirouter import OdiRouterClient
from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy
from nbpro_pipeline.providers.ratelimit import TokenBucket
from nbpro_pipeline.providers.rivya import RivyaClient, idempotency_key_for

__all__ = [
    "AuthError",
    "Balance",
    "CancelOutcome",
    "DeadlineExceededError",
    "DownloadedImage",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "InvalidReferenceError",
    "InvalidRequestError",
    "NotFoundError",
    "OdiRouterClient",
    "PollPolicy",
    "ProviderClient",
    "ProviderError",
    "RateLimitedError",
    "ResultExpiredError",
    "ResultImage",
    "RetryPolicy",
    "RetryableError",
    "RivyaClient",
    "SubmitOutcomeUnknown",
    "SubmittedTask",
    "TaskSnapshot",
    "TokenBucket",
    "UnreadableResultError",
    "UnsupportedOperationError",
    "idempotency_key_for",
]
