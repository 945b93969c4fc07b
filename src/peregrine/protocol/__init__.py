"""The agent ↔ frontend protocol: typed messages and their encoding."""
