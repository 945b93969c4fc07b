"""The web GUI: a small single-page application that talks to the REST API from the browser.

The server side only serves files (``routes.py``); every read and every change the GUI makes is
a request to ``/api/v1`` with the user's session cookie and CSRF token, so it is authorised,
audited and validated exactly as any other API client's. See docs/architecture.md for why.
"""
