"""The public REST API (FastAPI), served by every frontend beside the agent listener."""
