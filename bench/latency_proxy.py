"""A loopback TCP proxy that delays every chunk by a fixed time each way, to emulate network round trips.

Benchmarks use it to measure Table Storage access patterns the way they behave against Azure (milliseconds per
round trip), not only against a local emulator on the same machine (microseconds).
"""

from __future__ import annotations

import asyncio
import socket
import threading


class LatencyProxy:
    def __init__(self, target_port: int, delay_ms: float, host: str = "127.0.0.1"):
        self.target_port, self.delay, self.host = target_port, delay_ms / 2000.0, host  # half RTT each way
        with socket.socket() as sock:
            sock.bind((host, 0))
            self.port = sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.target_port)
            await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))
        except (ConnectionError, asyncio.CancelledError):
            client_writer.close()

    def __enter__(self) -> LatencyProxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, self.port), self.loop).result()
        return self

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
