#!/usr/bin/env python
"""A delaying TCP relay: the lab's stand-in for a controller far from its hosts.

The kernel here has no netem, so `labctl.py up --shape rtt10` (or rtt40) starts
this relay in the controller's namespace: for each host it listens on the host's
*controller address* (an extra address on the lab's bridge) and relays to the
host's real address, holding every chunk for half the round trip in each
direction, in order. Host-to-host traffic (replication, pgbouncer to the primary)
is untouched: only what the controller sends and receives is far.

    delayproxy.py --delay-ms 5 LISTEN_ADDR:PORT=TARGET_ADDR:PORT [...]

Each chunk is forwarded ``delay-ms`` after it arrived (not after the previous
one left), so the relay adds latency, not a bandwidth limit.
"""

import argparse
import asyncio
import signal
import sys
import time


async def pump(reader, writer, delay):
    """Copy reader -> writer, each chunk released ``delay`` s after it arrived."""
    queue = asyncio.Queue()

    async def release():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(release())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await queue.put((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    finally:
        await queue.put((time.monotonic() + delay, None))
        try:
            await sender
        except (ConnectionError, OSError):
            pass


def handler(target_host, target_port, delay):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay),
                             return_exceptions=True)
    return handle


async def serve(routes, delay):
    servers = []
    for listen, target in routes:
        host, port = listen.rsplit(':', 1)
        target_host, target_port = target.rsplit(':', 1)
        servers.append(await asyncio.start_server(handler(target_host, int(target_port), delay), host, int(port)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print('delayproxy: %d routes, %.1f ms each way' % (len(routes), delay * 1000), flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--delay-ms', type=float, required=True, help='added latency in each direction')
    parser.add_argument('routes', nargs='+', help='LISTEN_ADDR:PORT=TARGET_ADDR:PORT')
    args = parser.parse_args(argv)
    routes = [tuple(route.split('=', 1)) for route in args.routes]
    asyncio.run(serve(routes, args.delay_ms / 1000.0))


if __name__ == '__main__':
    main(sys.argv[1:])
