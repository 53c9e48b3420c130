"""The analysis app's REST API under /api/v1/orgs/<org>/, one module per area: ``captures``, ``coders``
(training runs, coders, exports), ``features``. Mounted by hartonomous_web/urls.py from ``urls.py``."""
