"""The RabbitMQ management API (HTTP), where one is configured: a GET and its JSON.

Used by the dashboard (node details) and the test servers (readiness). Never
raises for a server that does not answer: the caller gets None.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def management_get(management_url: str, path: str, timeout_s: float = 2.0) -> Any:
    """GET ``path`` from the RabbitMQ management API; its JSON, or None if it did not answer 200.

    Credentials come from the URL's userinfo (``http://user:pass@host:port``).
    """
    parts = urllib.parse.urlsplit(management_url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    request = urllib.request.Request(
        f"{parts.scheme}://{netloc}{path}",
        headers={"Authorization": f"Basic {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response) if response.status == 200 else None
    except urllib.error.HTTPError as exc:
        exc.close()  # an unclosed HTTPError leaks its socket (ResourceWarning)
        return None
    except (OSError, ValueError):  # URLError, refused, reset, timeout, bad JSON
        return None
