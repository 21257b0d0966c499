"""Domain errors. Services and stores raise these; `studios.api.errors` maps each to the
Civis error body `{"error", "errorDescription", "code"}`. Nothing here knows HTTP beyond the
status code each kind stands for.

    StudiosError
     ├── NotFound        404  the object does not exist, or the caller may not know it does
     ├── Forbidden       403  the caller can see it but may not do this
     ├── Unauthorized    401  no valid API key
     ├── Invalid         400  the request names a field wrongly (always says which)
     └── Conflict        409  the request is valid but the object's state refuses it
"""

from __future__ import annotations


class StudiosError(Exception):
    code: int = 500
    error: str = "internal_error"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class NotFound(StudiosError):
    code = 404
    error = "not_found"


class Forbidden(StudiosError):
    code = 403
    error = "forbidden"


class Unauthorized(StudiosError):
    code = 401
    error = "unauthorized"


class Invalid(StudiosError):
    code = 400
    error = "bad_request"


class Conflict(StudiosError):
    code = 409
    error = "conflict"
