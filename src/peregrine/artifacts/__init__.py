"""Artifacts: named, documented, typed YAML packages of queries, and their collection."""
