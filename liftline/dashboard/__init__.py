"""The live dashboard: a page for a browser, its JSON view, replay of dead jobs.

Served at ``/dashboard`` by the HTTP ingest service (:mod:`.entry` adds the
routes to the ingest app) and by ``liftline dashboard`` for clusters without
one. Layers: above ``status`` (it shows what ``gather`` reads) and ``ingest``
(it reuses the ingest app's token gate, API registry and JSON errors).
"""
