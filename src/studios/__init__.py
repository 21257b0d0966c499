"""Studios: a self-hostable server for the Civis Platform /studios API."""

__version__ = "0.1.0"
