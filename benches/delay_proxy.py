"""A TCP proxy that delays every chunk by a fixed time in each direction,
keeping their order: a database on another host, for benches/pg_profile.sh.

    python3 benches/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

asyncio's timers are coarse: measure the round trip it gives (pgbench
`SELECT 1` through it) rather than trusting DELAY_MS; 0.25 gave 2.45 ms on
the build machine.
"""
import asyncio, sys, time
listen_port, target_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pump(reader, writer):
    queue = asyncio.Queue()
    async def send():
        while True:
            at, data = await queue.get()
            if data is None:
                writer.close(); return
            wait = at + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    task = asyncio.create_task(send())
    while True:
        data = await reader.read(65536)
        await queue.put((time.monotonic(), data or None))
        if not data:
            break
    await task

async def handle(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer), return_exceptions=True)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
