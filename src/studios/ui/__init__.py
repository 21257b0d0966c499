"""The web UI: static pages and scripts (`static/`) that talk to the JSON API, and the few
routes that serve them (`routes.py`)."""
