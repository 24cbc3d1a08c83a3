"""Real servers for the remote tests, all on 127.0.0.1: moto's S3 server and a TCP proxy
that drops connections in the middle of a response."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from tests.helpers import live_module

KEY_ID, SECRET = "ckconv-test-key", "ckconv-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def options(endpoint: str, key: str = KEY_ID, secret: str = SECRET) -> dict[str, Any]:
    """s3fs storage options for a server at ``endpoint`` (no listing cache between steps)."""
    return {"endpoint_url": endpoint, "key": key, "secret": secret,
            "use_listings_cache": False,
            "skip_instance_cache": True}


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server in this process; yields its endpoint URL."""
    live_module("s3fs")
    server_mod = live_module("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def moto_s3_with_auth() -> Iterator[tuple[str, str, str]]:
    """moto's S3 server as a subprocess that checks credentials and IAM policies.

    The first four requests go unchecked (moto's INITIAL_NO_AUTH_ACTION_COUNT): they create
    an IAM user, its access key, a policy allowing S3, and nothing else may pass unsigned.
    Yields (endpoint, key id, secret) of that user.
    """
    live_module("moto.server")
    boto3 = live_module("boto3")
    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="ckconv")
        iam.put_user_policy(UserName="ckconv", PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", '
            '"Resource": "*"}]}'))
        key = iam.create_access_key(UserName="ckconv")["AccessKey"]
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto server did not start on port {port}")


class DroppingProxy:
    """Forwards 127.0.0.1:port to a server; the first ``drops`` connections whose response
    exceeds ``after`` bytes are cut right there (the client sees a truncated body)."""

    def __init__(self, target_port: int, drops: int = 1, after: int = 100_000):
        self.target_port = target_port
        self.drops = drops
        self.after = after
        self.dropped = 0
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        done = threading.Event()

        def pump_up() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(1 << 16):
                    upstream.sendall(data)
            done.set()

        threading.Thread(target=pump_up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(1 << 16):
                if sent + len(data) > self.after:
                    with self.lock:
                        cut = self.dropped < self.drops
                        if cut:
                            self.dropped += 1
                    if cut:
                        client.sendall(data[: max(0, self.after - sent)])
                        break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
            upstream.close()

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def http_server(directory: str) -> Iterator[tuple[str, list]]:
    """A static file server on 127.0.0.1 that honours Range requests, as object stores and
    CDNs do (Python's own handler ignores them). Yields (base URL, log of ranges served)."""
    import http.server

    served: list = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.translate_path(self.path)
            rng = self.headers.get("Range")
            if not rng or not os.path.isfile(path):
                served.append((self.path, None))
                return super().do_GET()
            size = os.path.getsize(path)
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
            with open(path, "rb") as f:
                f.seek(start)
                body = f.read(end - start + 1)
            served.append((self.path, (start, end)))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
