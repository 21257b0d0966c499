"""What a Docker engine's client raises when the engine did not do what was asked.

The docker SDK turns an engine's error answers into `docker.errors.DockerException`s
(`APIError`, `NotFound`...), but lets the transport's own failures through as they are: once the
client has spoken to the engine, an engine that died since raises
`requests.exceptions.ConnectionError` ("Connection aborted", "Connection refused") and one that
stalls `requests.exceptions.ReadTimeout`, neither of them a `DockerException`. Code that means
"the engine (or the swarm manager) could not be reached or refused" catches `ENGINE_ERRORS`.

A stream the SDK reads from the socket itself (a container's log, the events) can also break
with urllib3's or the socket's own error: `STREAM_ERRORS`.
"""

from __future__ import annotations

import docker.errors
import requests.exceptions
import urllib3.exceptions

ENGINE_ERRORS: tuple[type[Exception], ...] = (docker.errors.DockerException, requests.exceptions.RequestException)
STREAM_ERRORS: tuple[type[Exception], ...] = (*ENGINE_ERRORS, urllib3.exceptions.HTTPError, OSError)
