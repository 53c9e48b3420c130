"""The analysis app's pages, one module per area: ``captures`` (the section's home, new capture, a capture),
``coders`` (a training run: curves, metrics side by side), ``features`` (the feature browser, a feature, the
test box)."""
