"""What the stack tests share: free ports, JSON over HTTP, whether a recorded process group still runs, and
the end of a service's log for a failure message.

Not a test module: test_deployment.py and test_production_stack.py import it.
"""

import json
import os
import socket
import urllib.request
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (held open together while they are picked)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def request_json(url: str, body: dict | None = None, headers: dict[str, str] | None = None, method: str | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})}, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def log_tail(home: Path, name: str) -> str:
    """The last lines of <home>/stack/<name>.log, where the stack logs each service."""
    path = home / "stack" / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else "(no log)"
