"""The web server `manage.py serve` starts: uvicorn, with TCP_NODELAY on its listening socket.

With several workers uvicorn binds the socket itself, as ``socket.socket(AF_INET)`` (protocol
number 0), and asyncio then skips TCP_NODELAY on each connection (it sets it only on sockets
that say IPPROTO_TCP): every response written in two parts waited for the client's delayed
ACK. Measured with 2 workers: /login/ took 48 ms against 6 ms with one worker. Linux passes
TCP_NODELAY from the listening socket to the connections it accepts.

    python -m zepix_admin.web --host 127.0.0.1 --port 8000 --workers 2
"""

import argparse
import os
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    refusal = _refusal()
    if refusal:
        sys.exit(f"The web server does not start. {refusal}")
    config = uvicorn.Config(
        "zepix_admin.asgi:application",
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level=args.log_level,
        timeout_graceful_shutdown=3,  # open event streams would otherwise hold a shutdown forever
    )
    listener = config.bind_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if args.workers > 1:
            Multiprocess(config, sockets=[listener]).run()  # as uvicorn.run does, with our socket
        else:
            uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass


def _refusal() -> str:
    """Folders that are not the console's (zepix_admin.core.home) stop the node before it
    serves. Django is set up here for it: a node of one worker imports the app next anyway."""
    import django
    from django.db import connections

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zepix_admin.settings")
    django.setup()
    from zepix_admin.core.home import refusal

    try:
        return refusal()
    finally:
        connections.close_all()  # workers of their own open theirs


if __name__ == "__main__":
    main()
