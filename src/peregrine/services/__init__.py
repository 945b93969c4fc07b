"""The services: collections, hunts, the flow monitor, the client index and search, client
administration. The API and the frontend both call them; they reach agents only through the
``Fleet`` the frontend process gives them (``services/fleet.py``), never the frontend itself."""
