"""The projects app's pages (server-rendered, htmx), one module per area.

- ``base``: the organisation-scoped base classes every app's pages use (the one place pages are scoped)
- ``accounts``, ``health``, ``dashboard``, ``projects``, ``jobs``, ``organization``: the platform's pages
- ``teachers``, ``datasets``: teacher models and datasets of a project
"""
