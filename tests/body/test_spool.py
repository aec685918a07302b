"""The spool: memory up to spool_bytes, a private unlinked file beyond, digests as bytes arrive."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from proxy.body import BODY, BODY_BASE64, CHUNK, BodySpooler, SignedBody, feed_message
from proxy.errors import SpoolFailed


async def spool(data: bytes, tmp: Path, spool_bytes: int = 0, piece: int = 65_537) -> SignedBody:
    spooler = BodySpooler(spool_bytes, str(tmp), ("sha256", "md5"))
    for start in range(0, len(data), piece):
        await spooler.feed(data[start : start + piece])
    return await spooler.finish()


async def test_small_body_stays_in_memory(tmp_path: Path) -> None:
    body = await spool(b"x" * 1000, tmp_path, spool_bytes=1000)
    assert not body.spooled and body.data == b"x" * 1000
    assert body.digest("sha256") == hashlib.sha256(b"x" * 1000).hexdigest()
    assert body.payload() == b"x" * 1000


@pytest.mark.parametrize("size", [1001, 3 * 1024 * 1024 + 7])
async def test_large_body_goes_to_a_private_unlinked_file(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    spooler = BodySpooler(1000, str(tmp_path), ("sha256", "md5"))
    await spooler.feed(data[:600])
    assert spooler._fd is None  # still in memory
    await spooler.feed(data[600:])
    fd = spooler._fd
    assert fd is not None
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing on disk by name
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    body = await spooler.finish()
    assert body.spooled and body.size == size and len(body) == size
    assert body.digest("sha256") == hashlib.sha256(data).hexdigest()
    assert body.digest("md5") == hashlib.md5(data).hexdigest()
    assert body.digest("sha512") == hashlib.sha512(data).hexdigest()  # not declared: one more pass
    assert b"".join(body.chunks()) == data
    assert b"".join(body.chunks(4096)) == data  # as often as needed
    assert b"".join([c async for c in body.aiter_chunks()]) == data
    assert all(len(c) == CHUNK for c in list(body.chunks())[:-1])
    body.close()
    body.close()  # idempotent
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(ValueError):
        next(body.chunks())


async def test_close_ends_every_reading(tmp_path: Path) -> None:
    """An HTTP client may abandon a reading mid-way: closing the body still frees the file."""
    data = os.urandom(2 * CHUNK + 5)
    body = await spool(data, tmp_path)
    reader = body.aiter_chunks()
    assert await reader.__anext__() == data[:CHUNK]
    reader_fd = reader._fd  # type: ignore[attr-defined]
    body.close()
    assert [c async for c in reader] == []
    with pytest.raises(OSError):
        os.fstat(reader_fd)


@pytest.mark.parametrize("size", [1, 2, 3, 4, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 2])
async def test_streamed_message_equals_the_whole(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    body = await spool(data, tmp_path)
    message = (b"head", BODY, b"|", BODY_BASE64, b"tail")
    streamed = hashlib.sha256()
    feed_message(streamed, message, body)
    whole = b"head" + data + b"|" + base64.b64encode(data) + b"tail"
    assert streamed.hexdigest() == hashlib.sha256(whole).hexdigest()
    in_memory = hashlib.sha256()
    feed_message(in_memory, message, data)
    assert in_memory.hexdigest() == streamed.hexdigest()
    body.close()


async def test_missing_spool_dir_is_spool_failed(tmp_path: Path) -> None:
    spooler = BodySpooler(10, str(tmp_path / "gone"))
    with pytest.raises(SpoolFailed) as info:
        await spooler.feed(b"x" * 11)
    assert info.value.status == 507 and info.value.code == "spool_failed"
    assert "ENOENT" in info.value.message and "gone" in info.value.message


async def test_discard_closes_the_file(tmp_path: Path) -> None:
    spooler = BodySpooler(0, str(tmp_path))
    await spooler.feed(os.urandom(3 << 20))
    fd = spooler._fd
    assert fd is not None
    spooler.discard()
    with pytest.raises(OSError):
        os.fstat(fd)
