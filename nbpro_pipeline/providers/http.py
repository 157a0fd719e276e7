"""HTTP plumbing shared by both clients: retries that cannot double-charge, a cell-wide pause on 429,
streaming downloads with integrity checks, and scrubbing of credentials from every message.

A client subclass supplies only what differs: how to read its error envelopes (``_error_from_response``)
and how to get fresh result URLs for a task (``_fresh_images``).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers.base import (
    DownloadedImage,
    ProviderTraits,
    ResultImage,
    TaskHandle,
    TaskLike,
    TaskSnapshot,
    as_handle,
)
from nbpro_pipeline.providers.errors import (
    AnswerTooLargeError,
    AuthError,
    DeadlineExceededError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    ResultExpiredError,
    RetryableError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
    UnsafeTaskIdError,
)
from nbpro_pipeline.providers.http_stack import DEFAULT_TIMEOUT, build_http_client
from nbpro_pipeline.providers.policies import (
    AnswerBounds,
    LatencyTracker,
    PollPolicy,
    RetryPolicy,
    parse_retry_after,
)
from nbpro_pipeline.providers.ratelimit import TokenBucket
from nbpro_pipeline.providers.reading import DataUriTooLarge, decode_data_uri, final_image, path_id, safe_task_id
from nbpro_pipeline.redaction import redact_text

log = logging.getLogger(__name__)

# Transport failures where the request provably never reached the server: always safe to repeat.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_CHUNK = 64 * 1024
# A rate-limit token taken ahead by ``take_send_token`` for the current asyncio task's next API call.
_TOKEN_IN_HAND: contextvars.ContextVar[bool] = contextvars.ContextVar("nbpro_token_in_hand", default=False)
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})
MAX_RAW_BODY = 1024 * 1024  # an unreadable answer is kept up to this many bytes (a result body is small)
_ERROR_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthError,
    403: AuthError,
    402: InsufficientFundsError,
    404: NotFoundError,
    409: IdempotencyConflictError,
}


def strip_query(url: str) -> str:
    """A URL without query and fragment: signed-URL tokens must not end up in ledgers or logs."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class _PollCounter:
    """One wait()'s status requests: counted as they are made, so an error raised anywhere in the
    wait still reports the real number (the cell report's ``polls``). A 404 within the grace window after
    the create reads as "not visible yet" (UNKNOWN, polled again), not as an answer."""

    def __init__(self, client: HttpProviderClient, handle: TaskHandle) -> None:
        self.client, self.handle, self.polls = client, handle, 0
        self.task_id = handle.task_id

    async def poll(self) -> TaskSnapshot:
        self.polls += 1
        try:
            snapshot = await self.client.poll(self.handle)
        except NotFoundError:
            if not self._in_grace():
                raise
            self.client.counters["not_found_in_grace"] += 1
            snapshot = TaskSnapshot(provider=self.client.provider, task_id=self.task_id, state=TaskState.UNKNOWN)
        if self.client.on_poll is not None:
            self.client.on_poll(snapshot)
        return snapshot

    def _in_grace(self) -> bool:
        accepted = self.handle.accepted_at
        if accepted is None:
            return False
        age = (datetime.now(UTC) - accepted).total_seconds()
        return age < self.client.poll_policy.not_found_grace_s


class HttpProviderClient:
    """Base of RivyaClient and OdiRouterClient; not used on its own."""

    provider: str  # its traits name
    traits: ProviderTraits

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_connections: int = 128,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
        limiter: TokenBucket | None = None,
        bounds: AnswerBounds | None = None,
        follow_hosts: Iterable[str] = (),
    ) -> None:
        """``http_client`` is the caller's own ``httpx.AsyncClient`` (their proxies, certificates, event
        hooks...): it carries API calls and result downloads alike, and the caller closes it.
        ``timeout`` and ``max_connections`` then do nothing: that client's own settings apply.
        Without one, ``build_http_client`` makes (and ``aclose`` closes) the project's default.
        ``transport`` is the test seam (e.g. ``httpx.MockTransport``) for that default client.
        ``follow_hosts``: hosts besides the API's own whose returned URLs are followed (the key goes too)."""
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.poll_policy = poll or PollPolicy()
        self.bounds = bounds or AnswerBounds()
        base = urlsplit(self.base_url)
        self._origin = (base.scheme, base.netloc)
        self.follow_hosts = frozenset(h.lower() for h in follow_hosts)
        self._words_seen: set[str] = set()  # unknown status words, logged once each
        self._owns_http = http_client is None
        self._http = http_client or build_http_client(
            timeout=timeout, max_connections=max_connections, transport=transport
        )
        # Sent per API call only, never as a client default: result URLs point at CDNs and object
        # stores, which must never see the key. No key, no header: the provider then answers "key
        # missing", the clearest error there is.
        secret = self._key.get_secret_value()
        self._auth = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._rng = random.Random(seed)
        self._pause_until = 0.0
        self.latencies = LatencyTracker()  # completion times seen by wait(): the poll schedule's input
        # processing times (the provider's, where it reports them): the engine's admission's input
        self.run_times = LatencyTracker()
        self.counters: Counter[str] = Counter()
        self.limiter = limiter  # API calls only; CDN downloads are not the provider's quota
        # set by attach_admission: every poll's answer goes to the engine's admission, and a 429 to a
        # create is raised at once for it to count and resend (see _send)
        self.on_poll: Callable[[TaskSnapshot], None] | None = None
        self._create_429_raises = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- credentials never leave -------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return redact_text(text, [self._key.get_secret_value()])

    def redact_bytes(self, data: bytes) -> bytes:
        """``_redact`` over a body kept on disk: a provider that echoes the key must not leave it there."""
        return self._redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    def _error(self, cls: type[ProviderError], message: str, **kw: Any) -> ProviderError:
        return cls(self._redact(message), provider=self.provider, **kw)

    # -- subclass hooks -----------------------------------------------------------------------------
    def _error_from_response(self, response: httpx.Response) -> ProviderError:
        raise NotImplementedError

    async def _fresh_images(self, snapshot: TaskSnapshot) -> tuple[ResultImage, ...]:
        raise NotImplementedError

    async def poll(self, task: TaskLike) -> TaskSnapshot:
        raise NotImplementedError

    async def _on_deadline(
        self, handle: TaskHandle, last: TaskSnapshot, poll: Callable[[], Awaitable[TaskSnapshot]]
    ) -> TaskSnapshot | None:
        """What to do when wait() runs out of time; a terminal snapshot returned here is used.
        ``poll`` reads the status once more and is counted in the wait's ``polls``."""
        return None

    def attach_admission(self, on_poll: Callable[[TaskSnapshot], None]) -> None:
        """Hand the caller's admission what it steers by: every poll's answer (``on_poll``), and a 429
        answering a create, raised at once as ``RateLimitedError`` (no retry here, no client-wide pause:
        the provider is full of *tasks*, and pausing polls would only delay the finishes that free it)."""
        self.on_poll = on_poll
        self._create_429_raises = True

    async def take_send_token(self) -> None:
        """Wait out a 429 pause and take the rate-limit token for this task's next API call now, so
        that call goes out at once: the engine does this before opening the unjournaled submit window,
        which then measures only "sent -> task id durable". The token is this asyncio task's alone."""
        await self._respect_pause()
        if self.limiter is not None and not _TOKEN_IN_HAND.get():
            await self.limiter.acquire()
            _TOKEN_IN_HAND.set(True)

    async def _take_token(self) -> None:
        if _TOKEN_IN_HAND.get():
            _TOKEN_IN_HAND.set(False)
            return
        await self._respect_pause()
        if self.limiter is not None:
            await self.limiter.acquire()

    # -- requests -----------------------------------------------------------------------------------
    async def _respect_pause(self) -> None:
        """A 429 pauses every request of this client, not just the one that got it."""
        wait = self._pause_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def _pause(self, seconds: float) -> None:
        self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        # ``path`` is under base_url, or an absolute URL ``followed`` from the provider's own answer
        safe_to_repeat: bool,
        json: Any = None,
        headers: dict[str, str] | None = None,
        files: Any = None,
        data: Any = None,
        create: bool = False,
    ) -> tuple[httpx.Response, int]:
        """One API call with retries; returns the 2xx response and the attempts it took.

        ``safe_to_repeat=False`` marks a create that may bill and has no idempotency key: it is retried
        only when nothing can have been created (connect failure, or a 429/5xx answer to it); any
        other transport failure raises ``SubmitOutcomeUnknown`` instead of guessing. ``create`` marks a
        task create: under ``attach_admission`` its 429 is raised at once, for the admission.
        """
        err: ProviderError | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            await self._take_token()
            self.counters["requests"] += 1
            sent = await self._attempt(method, path, safe_to_repeat or not create, json=json, headers=headers,
                                       files=files, data=data)  # fmt: skip
            if isinstance(sent, httpx.Response):
                if sent.is_success:
                    return sent, attempt
                err = self._error_from_response(sent)
                if not err.retryable:
                    raise err
            else:
                err = sent
            delay = self.retry.delay(attempt, getattr(err, "retry_after", None), self._rng)
            if isinstance(err, RateLimitedError):
                self.counters["rate_limited"] += 1
                if create and self._create_429_raises:
                    self.counters["create_rejected"] += 1
                    raise err
                self._pause(delay)  # every request of this client waits, not just this one
            if attempt == self.retry.max_attempts:
                break
            self.counters["retries"] += 1
            log.info("%s %s %s: %s; retry %d in %.2fs", self.provider, method, path, err, attempt, delay)
            await asyncio.sleep(delay)
        assert err is not None
        raise err

    async def _attempt(self, method: str, path: str, may_repeat: bool, **kw: Any) -> httpx.Response | RetryableError:
        """One try of an API call: its answer, or a retryable error when nothing can have been created.
        A create that may have reached the provider (sent, then lost or answered too large) raises
        ``SubmitOutcomeUnknown`` unless ``may_repeat`` (an idempotent create) makes a resend safe."""
        try:
            return await self._request(method, path, **kw)
        except AnswerTooLargeError as exc:
            if not may_repeat:
                raise self._error(SubmitOutcomeUnknown, f"{method} {path}: {exc.message}; a task may exist") from exc
            raise
        except httpx.LocalProtocolError as exc:  # our request is malformed; it never left
            raise self._error(InvalidRequestError, f"{method} {path}: request not sendable ({exc})") from exc
        except _NEVER_SENT as exc:
            return self._error(RetryableError, f"{method} {path}: could not connect ({type(exc).__name__})")
        except httpx.TransportError as exc:
            if not may_repeat:
                self.counters["submit_outcome_unknown"] += 1
                raise self._error(
                    SubmitOutcomeUnknown,
                    f"{method} {path}: the request was sent but no answer came back "
                    f"({type(exc).__name__}); a task may have been created and billed",
                ) from exc
            return self._error(RetryableError, f"{method} {path}: transport failure ({type(exc).__name__})")

    async def _request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any):
        """One API call, once: the key goes to the API host (or a host ``follow_hosts`` names) only, an
        API call never follows a redirect (a key must not travel to wherever a 3xx points), and the
        answer is read up to ``bounds.max_api_body_bytes``."""
        sent = {**self._auth, **headers} if headers else self._auth
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        request = self._http.build_request(method, url, headers=sent, **kw)
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            content = await self._read_capped(response, self.bounds.max_api_body_bytes, f"{method} {path}")
        finally:
            await response.aclose()
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_FRAMING]
        return httpx.Response(response.status_code, headers=kept, content=content, request=request)

    async def _read_capped(self, response: httpx.Response, cap: int, what: str) -> bytes:
        """The decoded body, refused at once when its declared length is over ``cap`` and cut off as soon
        as the bytes that actually arrive pass it (a compressed bomb or an endless stream)."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._error(AnswerTooLargeError, f"{what}: answer of {declared} bytes is over the cap of {cap}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise self._error(AnswerTooLargeError, f"{what}: answer passed the cap of {cap} bytes; reading stopped")
            chunks.append(chunk)
        return b"".join(chunks)

    def followed(self, url: str | None) -> str | None:
        """A URL the provider returned, if it may be followed with the key: the API's own origin (or a
        relative path), or a host in ``follow_hosts``; else None and the documented path is used."""
        if not url:
            return None
        if url.startswith("/"):
            return f"{self._origin[0]}://{self._origin[1]}{url}"
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) == self._origin or (parts.hostname or "") in self.follow_hosts:
            return url
        self._note_once(f"host:{parts.hostname}", "not following %s: not the API host; list it in follow_hosts", url)
        return None

    def _task_path(self, handle: TaskHandle, followed: str | None, documented: str) -> str:
        """Where to ask about a task: the URL the provider returned, else ``documented`` (a format string
        taking the URL-quoted id); an id that cannot go into a path is refused."""
        target = self.followed(followed)
        if target is not None:
            return target
        if not safe_task_id(handle.task_id):
            raise self._error(
                UnsafeTaskIdError, f"task id {handle.task_id[:80]!r} cannot go into a URL path", code="unsafe_task_id"
            )
        return documented.format(path_id(handle.task_id))

    def _note_once(self, key: str, message: str, *args: Any) -> None:
        """Log a surprise about the provider once per client (an unknown status word, a foreign host)."""
        if key not in self._words_seen and len(self._words_seen) < 1000:
            self._words_seen.add(key)
            log.warning("%s: " + message, self.provider, *args)

    def note_state_word(self, word: Any, snapshot: TaskSnapshot) -> TaskSnapshot:
        """An unmapped status word is logged once and stays UNKNOWN: polled again, never terminal."""
        if snapshot.state is TaskState.UNKNOWN and word is not None:
            self.counters["unknown_state_words"] += 1
            self._note_once(f"word:{str(word)[:40]}", "unknown status word %r: treated as not finished", str(word)[:40])
        return snapshot

    def _status_error(
        self,
        response: httpx.Response,
        code: str | None,
        message: str,
        request_id: str | None,
        cls: type[ProviderError] | None = None,
    ) -> ProviderError:
        """Map an error answer onto the taxonomy: by ``cls`` when the provider's code names one (a code
        is more specific than a status), else by HTTP status. Any rate-limit error carries Retry-After."""
        status = response.status_code
        if cls is None:
            if status == 429:
                cls = RateLimitedError
            elif status >= 500:
                cls = RetryableError
            else:
                cls = _ERROR_BY_STATUS.get(status, InvalidRequestError)
        kw: dict[str, Any] = {"status_code": status, "code": code, "request_id": request_id}
        if issubclass(cls, RateLimitedError):
            kw["retry_after"] = parse_retry_after(response.headers.get("Retry-After"))
        return self._error(cls, message, **kw)

    def _check_locally(self, request: GenerationRequest) -> None:
        """Refuse, before any money moves, a request this provider would reject; every problem at once."""
        problems = request.problems_for(self.traits.name, self.traits.limits)
        if problems:
            raise self._error(
                InvalidRequestError,
                "; ".join(f"{p.field}: {p.message}" for p in problems),
                code="local_validation",
            )

    def _parse(self, model, response: httpx.Response):
        """Validate a 2xx body into a wire model; a malformed answer says which call produced it."""
        try:
            return model.model_validate_json(response.content)
        except ValueError as exc:
            raise self._error(
                ProviderError,
                f"unexpected {model.__name__} body from {response.request.method} "
                f"{response.request.url.path}: {str(exc)[:300]}",
                status_code=response.status_code,
            ) from None

    # -- waiting ------------------------------------------------------------------------------------
    async def wait(self, task: TaskLike, *, deadline_s: float | None = None) -> TaskSnapshot:
        """Poll until the task is terminal, with the adaptive schedule of ``poll_policy``.

        The deadline bounds every poll, not only the gaps between them (a trickling answer cannot keep a
        task alive). Past it the subclass's ``_on_deadline`` runs (OdiRouter cancels); if that still
        yields no terminal state, ``DeadlineExceededError`` is raised with the task id so nothing
        paid-for is forgotten. The snapshot returned, and every ``ProviderError`` raised, carries in
        ``polls`` the status requests really made (the deadline's own polls included).
        """
        handle = as_handle(task)
        counter = _PollCounter(self, handle)
        try:
            return await self._wait(handle, counter, deadline_s)
        except ProviderError as exc:
            exc.polls = counter.polls
            raise

    async def _wait(self, handle: TaskHandle, counter: _PollCounter, deadline_s: float | None) -> TaskSnapshot:
        start = time.monotonic()
        deadline = start + (deadline_s if deadline_s is not None else self.poll_policy.deadline_s)
        snapshot: TaskSnapshot | None = None
        polled_at = 0.0  # seconds after start of the last poll that found the task unfinished
        for at in self.poll_policy.poll_times(self.latencies):
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                break
            if start + at < now and snapshot is not None:
                continue  # fell behind (a slow poll, a 429 pause): skip to the next time still ahead
            await asyncio.sleep(max(0.0, min(start + at - now, remaining)))
            try:
                snapshot = await asyncio.wait_for(counter.poll(), max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                break
            if snapshot.state.terminal:
                self._learn(snapshot, polled_at, time.monotonic() - start)
                return snapshot.model_copy(update={"polls": counter.polls})
            polled_at = time.monotonic() - start
        return await self._past_deadline(handle, snapshot, counter)

    async def _past_deadline(
        self, handle: TaskHandle, last: TaskSnapshot | None, counter: _PollCounter
    ) -> TaskSnapshot:
        """The deadline passed: let the subclass act (a cancel, one more poll) within ``cancel_timeout_s``."""
        last = last or TaskSnapshot(provider=self.provider, task_id=handle.task_id, state=TaskState.UNKNOWN)
        try:
            final = await asyncio.wait_for(
                self._on_deadline(handle, last, counter.poll), self.poll_policy.cancel_timeout_s
            )
        except (TimeoutError, ProviderError) as exc:
            log.info("%s task %s: at the deadline: %s", self.provider, handle.task_id, exc or "timed out")
            final = None
        if final is not None and final.state.terminal:
            return final.model_copy(update={"polls": counter.polls})
        raise self._error(
            DeadlineExceededError,
            f"task {handle.task_id} still {last.state.value} after the deadline",
            task_id=handle.task_id,
            cancel_status=final.error_code if final else None,
            last_state=last.state.value,
            billed=final.billed if final else None,
        )

    def _unreadable(
        self, response: httpx.Response, task_id: str, reason: str, snapshot: TaskSnapshot | None
    ) -> UnreadableResultError:
        """A finished task whose answer has a shape this client does not know: never a silent $0 failure.

        The raw body (capped at ``MAX_RAW_BODY`` bytes) and its content type go with the error so the
        engine can quarantine them; ``snapshot`` (SUCCEEDED when the provider said so) lets it book the
        task at its price. Logged at WARNING with the task id; the message never holds the key.
        """
        where = f"{response.request.method} {response.request.url.path}"
        log.warning("%s task %s: unreadable answer to %s: %s", self.provider, task_id, where, reason)
        self.counters["unreadable_results"] += 1
        return self._error(
            UnreadableResultError,
            f"task {task_id}: {where} answered a body this client cannot read ({reason}); raw body kept",
            task_id=task_id,
            raw_body=self.redact_bytes(response.content[:MAX_RAW_BODY]),
            content_type=response.headers.get("Content-Type"),
            snapshot=snapshot,
            status_code=response.status_code,
        )

    def _learn(self, snapshot: TaskSnapshot, before: float, seen: float) -> None:
        """Feed the poll schedule: the provider's own run time when it reports one, else the middle of
        the window in which the task finished (between the last two polls; the first poll's time when
        it was the first). Failures count too: they occupy a slot just as long. ``run_times`` learns the
        processing time alone where the provider reports it (time queued left out), for the admission."""
        observed = snapshot.run_s if snapshot.run_s is not None else (before + seen) / 2 if before > 0 else seen
        self.latencies.add(observed)
        self.run_times.add(snapshot.processing_s if snapshot.processing_s is not None else observed)

    # -- downloads ----------------------------------------------------------------------------------
    async def fetch_result(
        self, snapshot: TaskSnapshot, sink: BinaryIO, *, index: int | None = None
    ) -> DownloadedImage:
        """Stream result image ``index`` (default: the final one) into ``sink``, hashing on the way; the
        bytes are never held whole. An inline ``data:`` image is decoded instead.

        An expired URL is refreshed from the provider; a cut download is retried from the start,
        rewinding ``sink`` (which must then be seekable: a file or BytesIO). Each download is bounded in
        size (``bounds.max_image_bytes``) and time (``bounds.download_timeout_s``).
        """
        if snapshot.state is not TaskState.SUCCEEDED:
            raise self._error(ProviderError, f"task {snapshot.task_id} is {snapshot.state.value}, not succeeded")
        images = snapshot.images or await self._fresh_images(snapshot)
        start = sink.tell() if sink.seekable() else None
        err: ProviderError | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            i = final_image(images) if index is None else index
            if not 0 <= i < len(images):
                raise self._error(NotFoundError, f"task {snapshot.task_id} has no result image #{i}")
            try:
                return await self._download_bounded(images[i], sink, attempt)
            except ResultExpiredError as exc:
                err = exc
                self.counters["expired_urls"] += 1
                images = await self._fresh_images(snapshot)
            except RetryableError as exc:
                err = exc
                await asyncio.sleep(self.retry.delay(attempt, getattr(exc, "retry_after", None), self._rng))
            if start is None:
                raise self._error(RetryableError, f"download of {snapshot.task_id} failed and the sink cannot rewind")
            sink.seek(start)
            sink.truncate()
            self.counters["download_retries"] += 1
        assert err is not None
        raise err

    async def _download_bounded(self, image: ResultImage, sink: BinaryIO, attempt: int) -> DownloadedImage:
        if image.inline:
            return self._write_inline(image, sink, attempt)
        try:
            return await asyncio.wait_for(self._download_once(image.url, sink, attempt), self.bounds.download_timeout_s)
        except TimeoutError:
            raise self._error(
                ProviderError,
                f"download of {strip_query(image.url)} took over {self.bounds.download_timeout_s:g} s; stopped",
            ) from None

    def _write_inline(self, image: ResultImage, sink: BinaryIO, attempt: int) -> DownloadedImage:
        """A result given inline as a ``data:`` URI: decoded (size-capped) into ``sink``."""
        try:
            data, kind = decode_data_uri(image.url, self.bounds.max_image_bytes)
        except DataUriTooLarge as exc:
            raise self._error(AnswerTooLargeError, f"inline result image: {exc}") from None
        except ValueError as exc:
            raise self._error(ProviderError, f"inline result image is not valid base64: {exc}") from None
        sink.write(data)
        self.counters["inline_images"] += 1
        return DownloadedImage(
            url=f"data:{kind or 'application/octet-stream'};base64 ({len(data)} bytes inline)",
            content_type=kind or image.content_type,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            attempts=attempt,
        )

    async def _download_once(self, url: str, sink: BinaryIO, attempt: int) -> DownloadedImage:
        shown = strip_query(url)
        cap = self.bounds.max_image_bytes
        try:
            # no credentials here; redirects (to another host, say) are followed
            async with self._http.stream("GET", url, follow_redirects=True) as response:
                if not response.is_success:
                    body = (await response.aread())[:300].decode("utf-8", "replace")
                    raise self._download_error(response.status_code, shown, body)
                expected = response.headers.get("Content-Length")
                if expected is not None and expected.isdigit() and int(expected) > cap:
                    raise self._error(AnswerTooLargeError, f"result {shown} is {expected} bytes, over the cap of {cap}")
                digest = hashlib.sha256()
                size = 0
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > cap:
                        raise self._error(AnswerTooLargeError, f"result {shown} passed the cap of {cap} bytes; stopped")
                    sink.write(chunk)
                    digest.update(chunk)
                wire = response.num_bytes_downloaded  # Content-Length counts encoded (e.g. gzip) bytes
        except httpx.TransportError as exc:
            raise self._error(RetryableError, f"download of {shown} cut off ({type(exc).__name__})") from exc
        if expected is not None and expected.isdigit() and int(expected) != wire:
            raise self._error(RetryableError, f"download of {shown} is {wire} bytes, expected {expected}")
        return DownloadedImage(
            url=shown,
            content_type=response.headers.get("Content-Type"),
            bytes=size,
            sha256=digest.hexdigest(),
            attempts=attempt,
        )

    def _download_error(self, status: int, url: str, body: str) -> ProviderError:
        if status in (403, 410) or (status == 400 and "expire" in body.lower()):
            return self._error(
                ResultExpiredError, f"result URL {url} refused with {status}: {body.strip()}", status_code=status
            )
        if status == 404:
            return self._error(NotFoundError, f"result URL {url} not found", status_code=status)
        if status == 429 or status >= 500:
            return self._error(RetryableError, f"result URL {url} answered {status}", status_code=status)
        return self._error(ProviderError, f"result URL {url} answered {status}: {body.strip()}", status_code=status)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def first_problem(exc: ValueError) -> str:
    """The first complaint of a failed wire-model parse, short (``result.primary_url: Field required``):
    enough to say what was off without echoing the body, which travels separately."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return f"{where}: {first.get('msg', 'invalid')}"
    return str(exc)[:200]
