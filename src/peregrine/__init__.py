"""Peregrine: endpoint visibility and DFIR. Ask an endpoint, or the fleet, questions in SQL."""

__version__ = "0.1.0"

__all__ = ["__version__"]
