"""The analysis app's actions, one module per area: ``captures``, ``coders``, ``exports``, ``features``.

Imported by module (``from analysis.actions import captures as capture_actions``); errors a person can act on
are :class:`projects.actions.ActionError`.
"""
