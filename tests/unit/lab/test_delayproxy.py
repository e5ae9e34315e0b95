"""The lab's delaying relay (lab/delayproxy.py) on loopback: it relays both
ways, in order, and holds each direction at least the delay asked for."""
import asyncio
import os
import pathlib
import sys
import time

sys.path.insert(0, os.path.join(str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file())), 'lab'))

import delayproxy  # noqa: E402


async def echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


async def exchange(delay):
    target = await asyncio.start_server(echo, '127.0.0.1', 0)
    target_port = target.sockets[0].getsockname()[1]
    relay = await asyncio.start_server(delayproxy.handler('127.0.0.1', target_port, delay), '127.0.0.1', 0)
    relay_port = relay.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection('127.0.0.1', relay_port)
    took, answers = [], []
    for message in (b'first', b'second' * 1000, b'third'):
        began = time.monotonic()
        writer.write(message)
        await writer.drain()
        answer = b''
        while len(answer) < len(message):
            answer += await reader.read(65536)
        took.append(time.monotonic() - began)
        answers.append(answer)
    writer.close()
    relay.close()
    target.close()
    return took, answers


def test_relay_echoes_in_order_and_holds_each_direction_for_the_delay():
    took, answers = asyncio.run(exchange(0.02))
    assert answers == [b'first', b'second' * 1000, b'third']
    # There and back: at least twice the one-way delay (a lower bound, never a speed claim).
    assert all(seconds >= 0.04 for seconds in took)
