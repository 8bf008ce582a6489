"""Real network faults on 127.0.0.1, for tests that must not fake the transport."""

import socket
from contextlib import contextmanager


def closed_port_url():
    """A local port nobody listens on: connecting is refused by the kernel, for real."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_server():
    """A local server that completes the TCP handshake (the kernel does, from the backlog) and never
    answers: a hung GHL, for real. Requests to it end in a read timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(32)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
