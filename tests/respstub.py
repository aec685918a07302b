"""A fault-injecting stand-in for Redis: a small asyncio TCP server speaking RESP2.

It answers the handshake a redis-py client sends (``PING``, ``CLIENT ...``,
``SELECT``, ``SCRIPT LOAD``) like Redis does, and answers every ``EVALSHA`` /
``EVAL`` with what :attr:`RespStub.mode` says: a reply of the wrong type, an
integer no script of Signet's can return, or bytes that are not RESP at all.
It counts the script calls it answered, so a test can show Signet asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

# what EVALSHA answers, by mode
REPLIES: dict[str, bytes] = {
    "bulk": b"$5\r\nhello\r\n",  # a string where an integer is due
    "array": b"*2\r\n:1\r\n:2\r\n",  # an array
    "nil": b"$-1\r\n",  # no value at all
    "huge": b":-100000000000000001\r\n",  # refused, retry in ~3 years
    "huge_wait": b":100000000000000\r\n",  # admitted after 3 years of waiting
    "garbage": b"%%% not resp at all\r\n",  # no RESP type byte
    "bad_int": b":12abc\r\n",  # an integer reply that is not an integer
}


class RespStub:
    """Serve RESP on 127.0.0.1:<port>; ``mode`` picks the script reply (see :data:`REPLIES`).

    Its event loop runs in a thread of its own, so it answers while the test's
    loop is blocked (starting a ``signet serve`` child waits synchronously).
    """

    def __init__(self, mode: str) -> None:
        if mode not in REPLIES:
            raise ValueError(mode)
        self.mode = mode
        self.script_calls = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RespStub:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for task in tasks:  # open connections end now, not when the loop is gone
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                command = await _read_command(reader)
                if command is None:
                    break
                writer.write(self._answer(command))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def _answer(self, command: list[bytes]) -> bytes:
        name = command[0].upper() if command else b""
        if name == b"PING":
            return b"+PONG\r\n"
        if name in (b"EVALSHA", b"EVAL"):
            self.script_calls += 1
            return REPLIES[self.mode]
        if name == b"SCRIPT" and len(command) > 2 and command[1].upper() == b"LOAD":
            sha = hashlib.sha1(command[2]).hexdigest().encode()
            return b"$%d\r\n%s\r\n" % (len(sha), sha)
        return b"+OK\r\n"  # CLIENT SETNAME/SETINFO, SELECT, ...: accepted


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One command as a RESP array of bulk strings (what redis-py sends); None at EOF."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        raise ValueError("not a RESP array")
    parts: list[bytes] = []
    for _ in range(int(line[1:])):
        head = await reader.readline()
        size = int(head[1:])
        data: Any = await reader.readexactly(size + 2)
        parts.append(data[:-2])
    return parts
