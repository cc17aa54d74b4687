"""``imgsearch serve``: the index as an HTTP service for upload pipelines.

The layer above the :class:`~imgsearch.index.Index` facade, beside the CLI: :mod:`.app` (the
routes, FastAPI), :mod:`.engine` (queries in parallel on snapshots, durable writes, time limits),
:mod:`.processes` (the query processes and the upload extraction process), :mod:`.snapshots`
(Index objects that queries lease), :mod:`.limits` (body size, image and key checks, the 4xx answers), :mod:`.auth` (bearer tokens),
:mod:`.settings` (the server's options) and :mod:`.metrics` (Prometheus). The package is imported
only by ``imgsearch serve``; the rest of imgsearch never imports it.
"""
