"""The InfluxDB v2 write API as the sink speaks it: ``POST /api/v2/write`` and ``GET /ping``.

InfluxDB 2.x/3.x/1.8+ and VictoriaMetrics answer it. The sink needs two requests
over one kept-alive connection, and influxdb-client's WriteApi spent more of the
sink's time on each write (its request models and parameter checks, urllib3's pool)
than sending the lines did (``bench/sink_bench.py``). The same request goes out:
``<url>/api/v2/write?org=...&bucket=...&precision=ms``, the body as given,
``Authorization: Token <token>`` when there is a token (InfluxDB 1.8 reads
``user:password`` there). A status outside 2xx raises ``WriteRefused`` with it; a
connection that fails raises what the socket raised (``OSError``,
``http.client.HTTPException``), and the next request opens a new one.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import ssl
import urllib.parse


class WriteRefused(Exception):
    """The server answered with an error status: bad data (4xx) or its own failure (5xx)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class InfluxWriter:
    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host[:port][/path], got {url!r}")
        # Made once: loading the system's CAs is the costly part of a TLS connection.
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._host = parts.hostname
        self._port = parts.port
        self._timeout_s = timeout_s
        base = parts.path.rstrip("/")
        query = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": "ms"})
        self._write_path = f"{base}/api/v2/write?{query}"
        self._ping_path = f"{base}/ping"
        self._headers = {
            "Content-Type": "text/plain",
            "Accept": "application/json",
            "User-Agent": "commune-collector",
        }
        if token:
            self._headers["Authorization"] = f"Token {token}"
        self._connection: http.client.HTTPConnection | None = None
        self.hang_ups = 0
        """Connections the server closed while kept alive between two requests (an idle
        time-out, or the server killed: the sink then writes its recent points again)."""

    def write(self, body: bytes) -> None:
        """Lines of line protocol, timestamps in milliseconds."""
        status, answer = self._request("POST", self._write_path, body)
        if not 200 <= status < 300:
            raise WriteRefused(status, answer)

    def ping(self) -> bool:
        """Whether the server says it is well, whatever it did to a write."""
        try:
            status, _ = self._request("GET", self._ping_path, None)
        except (OSError, http.client.HTTPException):
            return False
        return 200 <= status < 300

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Readable while no answer is awaited: the server closed it (an idle
            # keep-alive timed out); a write on it would fail for nothing.
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:
                self.hang_ups += 1
                self.close()
                connection = None
        if connection is None:
            if self._tls is not None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._tls
                )
            else:
                connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout_s
                )
            self._connection = connection
        return connection

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, str]:
        connection = self._connect()
        try:
            # A server may answer before it has read the body (413, 401) and hang up:
            # its answer is there to read (a dead connection raises below).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request(method, path, body=body, headers=self._headers)
            response = connection.getresponse()
            answer = response.read()
        except BaseException:
            self.close()  # half a request or answer on it: never reused
            raise
        return response.status, answer.decode(errors="replace")
