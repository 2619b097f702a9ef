"""The HTTP ingest service: POST a write, get 202 and a ticket once RabbitMQ confirmed it.

``liftline ingest`` runs it (see :mod:`liftline.ingest.server`); :func:`create_app`
builds the ASGI app for tests or embedding.
"""

from liftline.ingest.app import create_app
from liftline.ingest.openapi import Api
from liftline.ingest.service import IngestService
from liftline.ingest.validation import ApiError

__all__ = ["Api", "ApiError", "IngestService", "create_app"]
