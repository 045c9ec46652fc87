"""JSON schemas of the golden manifests, shipped with the package."""
