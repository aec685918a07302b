"""Signed request bodies of any size in flat memory.

A scheme that signs the body needs all of it before it can sign, so the
pipeline reads it whole first. Up to ``spool_bytes`` the body stays in memory
(one ``bytes``); beyond it, :class:`BodySpooler` writes it to a temporary file
in ``spool_dir`` while the digests the scheme declared (``body_digests``) are
updated block by block, so a 1 GiB body costs a few MiB of RAM.

The file is private and leaves nothing behind: ``tempfile.mkstemp`` creates it
with ``O_EXCL`` and mode 0600, and it is unlinked at once, before a single body
byte is written. From then on it exists only as an open descriptor, so no path
(client abort, upstream error, timeout, shutdown, even ``kill -9``) can leave
it on disk; closing the last descriptor frees the space.

Every thread that touches the file (a block write, a hashing pass, a chunk
read for the upstream) works on its own ``os.dup`` of the descriptor with
positioned I/O (``pwrite``/``pread``), so closing the body while a thread is
still busy can never make that thread hit a reused descriptor number.

A scheme whose message is ``prefix + body + suffix`` with a prefix known
before the body arrives (3Commas: the path and query; 3 Clicks: key, secret
and method) hands the spooler a hash state already fed with that prefix
(:meth:`proxy.auth.base.AuthScheme.body_prefix`); the spooler feeds it the
body block by block, and signing copies it and adds the suffix: no second
pass. Any other signature whose message holds the raw body or its base64 is
computed by a second sequential pass: the scheme describes its message as
parts (literal bytes, :data:`BODY`, :data:`BODY_BASE64`) and
:func:`feed_message` streams them through an incremental hash. Read sizes are
multiples of 3, so the base64 of each chunk concatenates to the base64 of the
whole body.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import os
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from proxy.errors import SpoolFailed
from proxy.uploads import MemoryBudget

CHUNK = 3 * 256 * 1024  # 768 KiB per read: a multiple of 3 for base64, large enough for hashing
WRITE_BLOCK = 1 << 20  # bytes gathered before one write to the spool file
DEFAULT_SPOOL_BYTES = 1 << 20

DIGESTS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}

T = TypeVar("T")


class BodyPart:
    """A placeholder for the body inside a message to sign (see :data:`BODY`)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


BODY = BodyPart("body")  # the body bytes as sent
BODY_BASE64 = BodyPart("body_base64")  # standard base64 with padding of the body
MessagePart = bytes | BodyPart
Message = Sequence[MessagePart]


@dataclass(frozen=True, slots=True, repr=False)
class BodyPrefix:
    """A hash state fed the message up to the body, to be fed the body as it arrives.

    ``owner`` is the scheme whose key the state holds: only that scheme, for
    the same ``prefix``, may use it (another route's or client's scheme falls
    back to a second pass). The prefix may hold a secret: no repr.
    """

    owner: object
    prefix: bytes
    state: Any

    def __repr__(self) -> str:
        return "<BodyPrefix>"


class SignedBody:
    """A complete request body: in memory or in a private unlinked file.

    ``size`` is known, ``digest(name)`` gives the hex digests the spooler was
    asked for (any other is computed by one more pass), ``chunks()`` /
    ``aiter_chunks()`` read it again from the start as often as needed (a
    401 retry sends it twice), and ``payload()`` is what the HTTP client
    sends: the bytes themselves, or an async iterator of chunks whose total
    is ``size`` (the caller sets ``Content-Length``).
    """

    def __init__(
        self,
        size: int,
        data: bytes | None = None,
        fd: int | None = None,
        digests: dict[str, str] | None = None,
        prefixed: BodyPrefix | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.size = size
        self._release = release  # gives an in-memory body's bytes back to limits.body_memory
        self._data = data
        self._fd = fd
        self._digests = dict(digests or {})
        self._prefixed = prefixed
        # readings of a spooled body; made with the first (an in-memory body never needs one)
        self._readers: weakref.WeakSet[_FileReader] | None = None
        # a forgotten body still closes its descriptor when collected
        self._closer = weakref.finalize(self, os.close, fd) if fd is not None else None

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedBody:
        return cls(len(data), data=data)

    @property
    def spooled(self) -> bool:
        """True when the body lives in a file (reading it is I/O: keep it off the loop)."""
        return self._data is None

    @property
    def data(self) -> bytes:
        """The bytes of an in-memory body (a spooled one is never loaded whole)."""
        if self._data is None:
            raise ValueError("a spooled body is read with chunks(), not loaded whole")
        return self._data

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        where = "file" if self.spooled else "memory"
        return f"<SignedBody {self.size} bytes in {where}>"

    def digest(self, name: str) -> str:
        """Lower-case hex digest ``name`` (sha1/sha256/sha512/md5) of the body."""
        known = self._digests.get(name)
        if known is not None:
            return known
        if self._data is not None:
            value = DIGESTS[name](self._data).hexdigest()
        else:
            h = DIGESTS[name]()
            for chunk in self.chunks():
                h.update(chunk)
            value = h.hexdigest()
        self._digests[name] = value
        return value

    def prehashed(self, owner: object, prefix: bytes) -> Any | None:
        """A copy of the state fed ``prefix + body`` while spooling, if ``owner`` gave that prefix."""
        p = self._prefixed
        if p is None or p.owner is not owner or p.prefix != prefix:
            return None
        return p.state.copy()

    def _reader_fd(self) -> int:
        if self._closer is None or not self._closer.alive:
            raise ValueError("the body was closed")
        assert self._fd is not None
        return os.dup(self._fd)

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body from the start in chunks of exactly ``size`` bytes (the last may be short).

        Blocking file reads for a spooled body: call from a worker thread.
        """
        if self._data is not None:
            view = memoryview(self._data)
            for start in range(0, self.size, size):
                yield bytes(view[start : start + size])
            return
        fd = self._reader_fd()
        try:
            offset = 0
            while offset < self.size:
                chunk = _pread_exact(fd, min(size, self.size - offset), offset)
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def aiter_chunks(self, size: int = CHUNK) -> AsyncIterator[bytes]:
        """The body from the start, each file read in a worker thread.

        The reading ends when the body is closed, even if its consumer (an
        HTTP client whose upstream went away) never finishes or closes it.
        """
        if self._data is not None:
            return _memory_chunks(self._data)
        reader = _FileReader(self._reader_fd(), self.size, size)
        if self._readers is None:
            self._readers = weakref.WeakSet()
        self._readers.add(reader)
        return reader

    def payload(self) -> bytes | AsyncIterator[bytes]:
        """What to send upstream: a fresh reading each call, ``size`` bytes in total."""
        return self._data if self._data is not None else self.aiter_chunks()

    def close(self) -> None:
        """Free the file (or the memory budget) and end every reading of it. Idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release()
        for reader in list(self._readers or ()):
            reader.close()
        if self._closer is not None:
            self._closer()


async def _memory_chunks(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


class _FileReader:
    """One sequential reading of a spooled body, on its own descriptor.

    The descriptor is closed when the reading ends, is closed, or (if a read
    is still running in its thread) as soon as that read returns, never while
    a thread may still use its number.
    """

    def __init__(self, fd: int, size: int, chunk: int) -> None:
        self._fd: int | None = fd
        self._size = size
        self._chunk = chunk
        self._offset = 0
        self._closed = False
        self._read: asyncio.Future[bytes] | None = None

    def __aiter__(self) -> _FileReader:
        return self

    async def __anext__(self) -> bytes:
        if self._closed or self._fd is None or self._offset >= self._size:
            self.close()
            raise StopAsyncIteration
        n = min(self._chunk, self._size - self._offset)
        loop = asyncio.get_running_loop()
        read = self._read = loop.run_in_executor(None, _pread_exact, self._fd, n, self._offset)
        try:
            chunk = await asyncio.shield(read)
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            if read.done():
                self._read = None
        self._offset += n
        return chunk

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        read = self._read
        if read is not None and not read.done():
            read.add_done_callback(self._release_after)
        else:
            self._release()

    def _release_after(self, read: asyncio.Future[bytes]) -> None:
        if not read.cancelled():
            read.exception()  # retrieved: a failed read nobody awaits is not an error
        self._release()

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, offset + got)
        if not more:
            raise OSError(errno.EIO, "spool file is shorter than the body written to it")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class BodySpooler:
    """Collects a body chunk by chunk: memory up to ``spool_bytes``, a private file beyond.

    With a ``memory`` budget (``limits.body_memory``, process-wide), the bytes
    kept in memory are reserved from it as they arrive; a body that cannot
    reserve its next chunk goes to a file at once, whatever its size. The
    reservation is given back when the body spills to a file, is discarded,
    or (in memory to the end) when the :class:`SignedBody` is closed.

    Writes and digest updates run in a worker thread one block at a time,
    overlapping with reading the next block from the client. An ``OSError``
    from the disk (full, unwritable directory, I/O error) becomes
    :class:`~proxy.errors.SpoolFailed`. Call :meth:`discard` on every path
    that does not reach :meth:`finish`.
    """

    def __init__(
        self,
        spool_bytes: int = DEFAULT_SPOOL_BYTES,
        spool_dir: str | None = None,
        digests: Iterable[str] = (),
        prefix: BodyPrefix | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.spool_bytes = spool_bytes
        self._budget = memory
        self._reserved = 0  # bytes of self._memory reserved from the budget
        self.spool_dir = spool_dir
        self.size = 0
        self._names = tuple(dict.fromkeys(digests))
        self._prefix = prefix  # a hash state fed the message up to the body: fed the body too
        self._memory = bytearray()
        self._block = bytearray()
        self._fd: int | None = None
        self._hashes: list[tuple[str, Any]] = []
        self._written = 0
        self._pending: asyncio.Future[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._fd is None:
            fits = len(self._memory) + len(chunk) <= self.spool_bytes
            if fits and (self._budget is None or self._budget.take(len(chunk))):
                self._reserved += len(chunk)
                self._memory += chunk
                return
            # past spool_bytes, or the process holds limits.body_memory already: to a file
            self._open()
            self._block, self._memory = self._memory, bytearray()
            self._block += chunk
            self._give_back()
        else:
            self._block += chunk
        if len(self._block) >= WRITE_BLOCK:
            await self._flush()

    async def finish(self) -> SignedBody:
        """The complete body; the spooler hands over its file and is spent."""
        if self._fd is None:
            data = bytes(self._memory)
            self._memory = bytearray()  # one copy of the body at a time
            reserved, self._reserved = self._reserved, 0
            budget = self._budget
            release = (lambda: budget.give_back(reserved)) if budget is not None and reserved else None
            return SignedBody(len(data), data=data, release=release)
        await self._flush()
        await self._wait_pending()
        fd, self._fd = self._fd, None
        digests = {name: h.hexdigest() for name, h in self._hashes if name}
        return SignedBody(self.size, fd=fd, digests=digests, prefixed=self._prefix)

    def discard(self) -> None:
        """Drop whatever was collected (a thread still writing holds its own descriptor)."""
        self._memory = bytearray()
        self._give_back()
        self._block = bytearray()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        pending, self._pending = self._pending, None
        if pending is not None:
            # nobody will await it any more: retrieve its outcome so it is not logged
            pending.add_done_callback(_ignore_outcome)

    def _give_back(self) -> None:
        reserved, self._reserved = self._reserved, 0
        if self._budget is not None and reserved:
            self._budget.give_back(reserved)

    # ---------------------------------------------------------------- file

    def _open(self) -> None:
        where = self.spool_dir or tempfile.gettempdir()
        try:
            fd, path = tempfile.mkstemp(prefix="signet-body-", dir=where)  # O_EXCL, mode 0600
        except OSError as exc:
            raise _spool_failed(where, exc) from None
        try:
            os.unlink(path)  # from now on only the descriptor exists
        except OSError as exc:
            os.close(fd)
            raise _spool_failed(where, exc) from None
        self._fd = fd
        self._hashes = [(name, DIGESTS[name]()) for name in self._names]
        if self._prefix is not None:
            self._hashes.append(("", self._prefix.state))

    async def _flush(self) -> None:
        if not self._block:
            return
        await self._wait_pending()
        assert self._fd is not None
        block, self._block = self._block, bytearray()
        offset = self._written
        self._written += len(block)
        fd = os.dup(self._fd)
        hashes = [h for _, h in self._hashes]
        self._pending = asyncio.get_running_loop().run_in_executor(None, _absorb, fd, block, offset, hashes)

    async def _wait_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            await pending
        except OSError as exc:
            raise _spool_failed(self.spool_dir or tempfile.gettempdir(), exc) from None


def _absorb(fd: int, block: bytearray, offset: int, hashes: list[Any]) -> None:
    """Worker thread: hash one block and write it at ``offset`` on its own descriptor."""
    try:
        for h in hashes:
            h.update(block)
        view = memoryview(block)
        while view:
            written = os.pwrite(fd, view, offset)
            offset += written
            view = view[written:]
    finally:
        os.close(fd)


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _spool_failed(where: str, exc: OSError) -> SpoolFailed:
    reason = exc.strerror or type(exc).__name__
    name = errno.errorcode.get(exc.errno or 0, "")
    detail = f"{reason} ({name})" if name else reason
    return SpoolFailed(f"cannot spool the request body to spool_dir {where!r}: {detail}")


# --------------------------------------------------------------- signing


def is_spooled(body: object) -> bool:
    return isinstance(body, SignedBody) and body.spooled


def body_bytes(body: bytes | SignedBody | None) -> bytes:
    """An in-memory body as bytes (``b""`` for none)."""
    if body is None:
        return b""
    if isinstance(body, SignedBody):
        return body.data
    return body


def body_size(body: bytes | SignedBody | None) -> int:
    return 0 if body is None else len(body)


def body_digest(body: bytes | SignedBody | None, name: str) -> str:
    """Hex digest of the body; precomputed while spooling when the scheme declared it."""
    if isinstance(body, SignedBody):
        return body.digest(name)
    return DIGESTS[name](body or b"").hexdigest()


def render_message(message: Message, body: bytes) -> bytes:
    """The whole message as bytes, for an in-memory body."""
    out = []
    for part in message:
        if isinstance(part, bytes):
            out.append(part)
        elif part is BODY:
            out.append(body)
        else:
            out.append(base64.b64encode(body))
    return b"".join(out)


def prehashed(body: bytes | SignedBody | None, owner: object, prefix: bytes) -> Any | None:
    """The spooler's ``prefix + body`` state (a copy) from ``owner`` for a spooled body, else None."""
    if isinstance(body, SignedBody) and body.spooled:
        return body.prehashed(owner, prefix)
    return None


def feed_message(h: Any, message: Message, body: bytes | SignedBody | None) -> None:
    """Update hash/HMAC ``h`` with the message; a spooled body is streamed from its file.

    Blocking for a spooled body: run it in a worker thread (see :func:`off_loop`).
    """
    if not is_spooled(body):
        h.update(render_message(message, body_bytes(body)))
        return
    assert isinstance(body, SignedBody)
    for part in message:
        if isinstance(part, bytes):
            h.update(part)
        elif part is BODY:
            for chunk in body.chunks():
                h.update(chunk)
        else:
            for chunk in body.chunks():  # CHUNK is a multiple of 3: no padding mid-stream
                h.update(base64.b64encode(chunk))


_signing_pool: ThreadPoolExecutor | None = None


def _signing_threads() -> ThreadPoolExecutor:
    """Threads for whole-file signing passes, apart from the loop's default executor.

    A pass over a large body holds its thread for seconds; kept apart, it never
    queues the short block writes and chunk reads of other uploads behind it.
    Created on first use, so a forked worker builds its own.
    """
    global _signing_pool
    if _signing_pool is None:
        _signing_pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="signet-sign")
    return _signing_pool


async def off_loop(fn: Callable[[Any], T], arg: Any, body: object) -> T:
    """``fn(arg)`` here for an in-memory body, in a worker thread for a spooled one.

    Signing a spooled body may read and hash the whole file: seconds for a
    GiB, which must not stall every other request on the event loop.
    """
    if is_spooled(body):
        return await asyncio.get_running_loop().run_in_executor(_signing_threads(), fn, arg)
    return fn(arg)
