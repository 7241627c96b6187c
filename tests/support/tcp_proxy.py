"""A TCP proxy on loopback that can blackhole, reset and delay (toxiproxy is not packaged here).

Runs an asyncio server in a thread of the test process, forwarding every
connection to ``target``. Faults, switched at any time:

- ``blackhole()``: bytes in both directions vanish and new connections hang
  (a cable pulled without a FIN: only timeouts and heartbeats notice);
- ``reset()``: every open connection is cut with a TCP RST (SO_LINGER 0);
- ``delay(seconds)``: each chunk waits that long before it is forwarded;
- ``heal()``: back to forwarding at once.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Bytes read at once.
CHUNK = 65536


class FaultyProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "pass"
        self.latency = 0.0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty-proxy", daemon=True)

    def start(self) -> FaultyProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pump(reader, upstream_writer), self._pump(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream_writer):
            end.transport.abort()
            self._writers.discard(end)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(CHUNK):
            if self.mode == "blackhole":
                continue
            if self.latency:
                await asyncio.sleep(self.latency)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    # -- faults (called from the test's thread) -------------------------------

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def delay(self, seconds: float) -> None:
        self.mode, self.latency = "pass", seconds

    def heal(self) -> None:
        self.mode, self.latency = "pass", 0.0

    def reset(self) -> None:
        """Cut every open connection with an RST (the next ones are forwarded as the mode says)."""

        def cut() -> None:
            for writer in list(self._writers):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(cut)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):  # let the aborted transports close their sockets
            await asyncio.sleep(0)

    def stop(self) -> None:
        """Close every connection and the listener, then the loop and its thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def faulty_proxy(target_host: str, target_port: int) -> Iterator[FaultyProxy]:
    """A running :class:`FaultyProxy`, stopped afterwards."""
    proxy = FaultyProxy(target_host, target_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
