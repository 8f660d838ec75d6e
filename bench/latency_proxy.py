"""A TCP relay that makes a local server far away: `python -m bench.latency_proxy PORT TARGET_PORT ONE_WAY_MS`.

Each chunk read from one side is written to the other ONE_WAY_MS later, in order, whatever else is in flight: a
round trip takes twice that, and commands written together travel together, as on a real network. It prints
"ready" once listening. Scenario 3 puts it in front of the SMTP sink, because real SMTP servers are far away.
"""
import asyncio
import sys


async def relay(reader, writer, delay):
    """Copy reader to writer, each chunk `delay` seconds after it was read; close the writer at the end."""
    loop = asyncio.get_running_loop()
    in_flight = asyncio.Queue()

    async def deliver():
        while True:
            due, chunk = await in_flight.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            in_flight.put_nowait((loop.time() + delay, chunk))
    finally:
        in_flight.put_nowait((loop.time() + delay, b""))
        await delivering


async def serve(port, target_port, delay):
    async def connect(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(relay(client_reader, server_writer, delay), relay(server_reader, client_writer, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(connect, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main():
    port, target_port, one_way_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    asyncio.run(serve(port, target_port, one_way_ms / 1000))


if __name__ == "__main__":
    main()
