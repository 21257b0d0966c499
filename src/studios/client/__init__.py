"""The user CLI (`studios ls`, `ps`, `deploy`, `logs`, `stop`): a client of the HTTP API only,
so it works against any server that speaks the Civis /studios API. Imports nothing of the
server side."""
