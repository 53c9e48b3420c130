"""The projects app's Channels consumers (websockets), one module per area.

- ``base``: :class:`~projects.consumers.base.OrgConsumer`, the organisation-scoped base every app's consumers use
- ``jobs``: live job progress for an organisation's pages
"""
