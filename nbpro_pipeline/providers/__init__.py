"""Async clients for the Nano Banana Pro providers behind one small interface (``ProviderClient``), one
package each, and the registry (``PROVIDERS``) that everything outside this package reads."""

from nbpro_pipeline.providers.base import (
    Balance,
    CancelOutcome,
    DownloadedImage,
    ProviderClient,
    ResultImage,
    SubmittedTask,
    TaskHandle,
    TaskSnapshot,
    TaskUrls,
    idempotency_key,
)
from nbpro_pipeline.providers.entry import ProviderEntry
from nbpro_pipeline.providers.errors import (
    AnswerTooLargeError,
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
    UnsafeTaskIdError,
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.odirouter import OdiRouterClient
from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy
from nbpro_pipeline.providers.ratelimit import TokenBucket
from nbpro_pipeline.providers.registry import PROVIDERS, Provider, Registry, UnknownProvider, registered
from nbpro_pipeline.providers.rivya import RivyaClient

__all__ = [
    "AnswerTooLargeError",
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
    "TaskHandle",
    "TaskSnapshot",
    "TaskUrls",
    "TokenBucket",
    "UnreadableResultError",
    "UnsafeTaskIdError",
    "UnsupportedOperationError",
    "idempotency_key",
    "PROVIDERS",
    "Provider",
    "ProviderEntry",
    "Registry",
    "UnknownProvider",
    "registered",
]
