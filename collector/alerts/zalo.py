"""Zalo Official Account messages: the channel technicians in Vietnam read.

apprise has no Zalo plugin, so this speaks the OA's documented HTTP API itself:

- a message is ``POST {api}/v3.0/oa/message/cs`` with the OA's access token in the
  ``access_token`` header and ``{"recipient": {"user_id": …}, "message": {"text": …}}``
  (plain text, at most 2,000 characters) to each technician following the OA; Zalo
  answers HTTP 200 with ``{"error": 0, …}`` on success and a negative ``error`` and
  its ``message`` otherwise;
- an access token lives about 25 hours; it is renewed with ``POST
  {oauth}/v4/oa/access_token`` (header ``secret_key``: the app's secret; form
  ``app_id``, ``grant_type=refresh_token``, ``refresh_token``), which answers a new
  access token **and a new refresh token** (each refresh token is good once), so the
  pair is kept in a file the collector rewrites atomically (mode 0600). It is renewed
  before it expires, and once more when Zalo says the token is invalid or expired.

Nothing in a message is markup: the text goes as it is (see notify.py).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.configtypes import read_secret

log = logging.getLogger(__name__)

#: The OA API's limit on a text message.
MAX_TEXT = 2000
#: Answers larger than this are not Zalo's.
MAX_ANSWER = 64 * 1024
#: Partly delivered texts remembered at most (each is retried until all get it or the
#: notifier gives the event up).
MAX_PARTLY = 1000
#: Renew this long before the access token expires.
RENEW_BEFORE_S = 600.0
#: Zalo's error codes for an access token it no longer takes.
TOKEN_ERRORS = frozenset({-216, -124, -14014})


class ZaloError(RuntimeError):
    pass


@dataclass(frozen=True)
class ZaloSettings:
    app_id: str
    secret_key_file: str
    """The app's secret key (Zalo for Developers → the app → Settings), alone in a file."""
    token_file: str
    """The access and refresh tokens, JSON; made once from the OA's first authorization
    (``{"refresh_token": "…"}`` is enough) and kept up to date by the collector."""
    user_ids: tuple[str, ...]
    """Technicians following the OA (their user_id for this OA)."""
    api_url: str = "https://openapi.zalo.me"
    oauth_url: str = "https://oauth.zaloapp.com"
    timeout_s: float = 10.0


def text_of(title: str, body: str) -> str:
    text = f"{title}\n{body}".strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class ZaloChannel:
    """Sends one text to every recipient; True only when all of them got it. Zalo
    takes one recipient per call: when some got a text and others did not, the
    notifier's retry of the same text goes only to those who did not (remembered
    while the collector runs)."""

    def __init__(self, settings: ZaloSettings, clock: Any = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._partly: collections.OrderedDict[str, set[str]] = collections.OrderedDict()
        """Texts some recipients got and others not yet: text -> who got it."""

    def send(self, title: str, body: str) -> bool:
        text = text_of(title, body)
        with self._lock:
            got = self._partly.pop(text, set())
            try:
                token = self._token()
                for user_id in self.settings.user_ids:
                    if user_id in got:
                        continue
                    answer = self._message(token, user_id, text)
                    if answer.get("error") in TOKEN_ERRORS:
                        token = self._renew()
                        answer = self._message(token, user_id, text)
                    if answer.get("error") == 0:
                        got.add(user_id)
                        continue
                    log.warning(
                        "Zalo refused the message to %s: %s %s",
                        user_id,
                        answer.get("error"),
                        str(answer.get("message", ""))[:200],
                    )
            except (ZaloError, OSError, ValueError) as exc:
                log.warning("Zalo: %s", exc)
            if all(user_id in got for user_id in self.settings.user_ids):
                return True
            if got:
                self._partly[text] = got
                while len(self._partly) > MAX_PARTLY:
                    self._partly.popitem(last=False)
            return False

    # the tokens ----------------------------------------------------------------------

    def _saved(self) -> dict[str, Any]:
        try:
            data = json.loads(Path(self.settings.token_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ZaloError(f"{self.settings.token_file}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("refresh_token"), str):
            raise ZaloError(f"{self.settings.token_file}: no refresh_token")
        return data

    def _token(self) -> str:
        saved = self._saved()
        token, expires = saved.get("access_token"), saved.get("expires_at", 0)
        fresh = isinstance(expires, int | float) and expires - RENEW_BEFORE_S > self.clock()
        if isinstance(token, str) and token and fresh:
            return token
        return self._renew(saved)

    def _renew(self, saved: dict[str, Any] | None = None) -> str:
        saved = saved or self._saved()
        form = urllib.parse.urlencode(
            {
                "app_id": self.settings.app_id,
                "grant_type": "refresh_token",
                "refresh_token": saved["refresh_token"],
            }
        ).encode()
        answer = self._post(
            f"{self.settings.oauth_url.rstrip('/')}/v4/oa/access_token",
            form,
            {
                "secret_key": read_secret(self.settings.secret_key_file),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        token, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not isinstance(token, str) or not token or not isinstance(refresh, str) or not refresh:
            raise ZaloError(
                f"could not renew the OA's access token: {answer.get('error')} "
                f"{str(answer.get('error_description') or answer.get('message') or '')[:200]}"
            )
        try:
            lifetime = float(answer.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._write({"access_token": token, "refresh_token": refresh,
                     "expires_at": self.clock() + lifetime})  # fmt: skip
        return token

    def _write(self, data: dict[str, Any]) -> None:
        """Atomically, readable by the collector only: the refresh token is good once,
        so losing the file's new content would lose the channel."""
        path = Path(self.settings.token_file)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".zalo-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    # HTTP -----------------------------------------------------------------------------

    def _message(self, token: str, user_id: str, text: str) -> dict[str, Any]:
        body = json.dumps(
            {"recipient": {"user_id": user_id}, "message": {"text": text}}, ensure_ascii=False
        ).encode()
        return self._post(
            f"{self.settings.api_url.rstrip('/')}/v3.0/oa/message/cs",
            body,
            {"access_token": token, "Content-Type": "application/json; charset=utf-8"},
        )

    def _post(self, url: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        if not url.startswith(("https://", "http://")):
            raise ZaloError(f"not an HTTP URL: {url[:100]}")
        request = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:  # noqa: S310
                raw = response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            raise ZaloError(f"{url}: HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise ZaloError(f"{url}: {exc.reason}") from None
        if len(raw) > MAX_ANSWER:
            raise ZaloError(f"{url}: answer too large")
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise ZaloError(f"{url}: not a JSON object")
        return answer
