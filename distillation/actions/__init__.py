"""The distillation app's actions, one module per area: ``importance``, ``recipes``, ``builds``.

Imported by module (``from distillation.actions import recipes as recipe_actions``); errors a person can act on
are :class:`projects.actions.ActionError`.
"""
