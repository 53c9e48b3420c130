"""The projects app's htmx pages, one module per area; :mod:`projects.views.base` holds the organisation-scoped base classes every app's pages use."""
