"""The projects app's Channels consumers; :mod:`projects.consumers.base` holds the organisation-scoped base every app's consumers use."""
