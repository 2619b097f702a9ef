"""What the RabbitMQ management API tells about the cluster: nodes, and where each
replicated queue's leader and replicas are.

AMQP says nothing about a cluster's members; the management plugin (which the
local stack enables on every node) does. Each call tries the management URLs in
turn (``Settings.management_urls``) and gives up after ``timeout_s`` per URL.
Standard library only (and pika to parse an AMQP URL). The dashboard and the
test servers use ``management_get`` too.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pika

from liftline.errors import BrokerUnavailable
from liftline.settings import Settings, mask_url


def management_request(url: str, path: str, *, method: str = "GET",
                       body: Any = None) -> urllib.request.Request:
    """A request for ``path`` on the management API at ``url``, with the credentials of
    the URL's userinfo (``http://user:pass@host:port``; guest by default) and ``body``
    as JSON if given. ValueError if the URL's port is out of range."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:  # raises ValueError when out of range
        netloc = f"{netloc}:{parts.port}"
    headers = {"Authorization": f"Basic {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return urllib.request.Request(
        f"{parts.scheme}://{netloc}{path}", method=method, headers=headers,
        data=None if body is None else json.dumps(body).encode())


def management_get(url: str, path: str, timeout_s: float = 2.0) -> Any:
    """GET ``path`` from the management API at ``url``; its JSON, or None if it did not
    answer 200 (see :func:`management_request` for the credentials)."""
    try:
        request = management_request(url, path)
    except ValueError:  # a port out of range: nothing can answer there
        return None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response) if response.status == 200 else None
    except urllib.error.HTTPError as exc:
        exc.close()  # an unclosed HTTPError leaks its socket (ResourceWarning)
        return None
    except (OSError, ValueError):  # URLError, refused, reset, timeout, bad JSON
        return None


@dataclass
class QueuePlacement:
    """Where a replicated queue lives: its leader and its members (online or not)."""

    name: str
    kind: str  # "stream", "quorum" or "classic"
    leader: str | None
    members: list[str] = field(default_factory=list)
    online: list[str] = field(default_factory=list)
    state: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"queue": self.name, "type": self.kind, "leader": self.leader,
                "members": sorted(self.members), "online": sorted(self.online),
                "state": self.state}


@dataclass
class ClusterView:
    """The nodes (name → running) and the placement of the queues asked for."""

    source: str
    nodes: dict[str, bool]
    queues: dict[str, QueuePlacement]


def cluster_view(settings: Settings, prefix: str, *, timeout_s: float | None = None
                 ) -> ClusterView:
    """The nodes and every queue whose name starts with ``prefix``, from the first
    management URL that answers; BrokerUnavailable if none does."""
    timeout = timeout_s or settings.query_timeout_s
    vhost = urllib.parse.quote(pika.URLParameters(settings.amqp_nodes[0]).virtual_host, safe="")
    tried = []
    for url in settings.management_urls:
        nodes = management_get(url, "/api/nodes?columns=name,running", timeout)
        if not isinstance(nodes, list):
            tried.append(mask_url(url))
            continue
        queues = management_get(url, f"/api/queues/{vhost}?columns=name,type,node,leader,members,"
                               "online,state", timeout)
        placements = {}
        for q in queues if isinstance(queues, list) else []:
            name = q.get("name", "")
            if not name.startswith(prefix):
                continue
            kind = q.get("type", "classic")
            # A quorum queue names its leader; a stream's leader is the node it reports.
            leader = q.get("leader") if kind == "quorum" else q.get("node")
            placements[name] = QueuePlacement(name, kind, leader, list(q.get("members") or []),
                                              list(q.get("online") or []), q.get("state", ""))
        return ClusterView(mask_url(url), {n["name"]: bool(n.get("running")) for n in nodes},
                           placements)
    raise BrokerUnavailable(f"no RabbitMQ management API answered (tried {', '.join(tried)})")
