"""What a deployment's app is given: params as environment variables (one rule per param
type, documented in docs/params.md), the CIVIS_* variables, and the git credential.
Resolves credential ids against the database; knows nothing of runtimes."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.orm import Session

from studios.db.models import Credential
from studios.services.secrets import SecretBox
from studios.store import credentials as cred_store

GIT_TYPES = ("Git", "GitHub", "GitLab", "Bitbucket")
"""Credential types used for a clone when a studio names no gitCredentialId."""


class LaunchRefused(Exception):
    """The deployment can't be given what it names (someone else's credential, a missing one)."""


@dataclasses.dataclass(frozen=True)
class GitLogin:
    username: str | None
    password: str


def _credential(session: Session, credential_id: int, user_id: int, what: str) -> Credential:
    cred = cred_store.get(session, credential_id)
    if cred is None or cred.owner_id != user_id:
        raise LaunchRefused(f"{what}: credential {credential_id} does not exist or is not yours to use")
    return cred


def param_env(session: Session, box: SecretBox, params: list[dict[str, Any]], user_id: int) -> tuple[dict[str, str], dict[str, str]]:
    """(plain variables, secret variables) for the params: a credential's secret is kept
    apart, so runtimes can keep it out of specs they store in plain text."""
    env: dict[str, str] = {}
    secret: dict[str, str] = {}
    for param in params:
        name, kind, value = param["name"], param["type"], param.get("value")
        if value is None:
            continue
        if kind in ("credential_aws",):
            cred = _credential(session, int(value), user_id, f"param {name}")
            env[f"{name}_ACCESS_KEY_ID"] = cred.username or ""
            secret[f"{name}_SECRET_ACCESS_KEY"] = box.open(cred.secret)
        elif kind in ("credential_custom", "credential_redshift", "database"):
            cred = _credential(session, int(value), user_id, f"param {name}")
            env[f"{name}_USERNAME"] = cred.username or ""
            secret[f"{name}_PASSWORD"] = box.open(cred.secret)
            if kind == "database":
                env[f"{name}_CREDENTIAL_ID"] = str(cred.id)
        elif kind == "bool":
            env[name] = "true" if value.strip().lower() in ("true", "1", "yes", "t") else "false"
        else:
            env[name] = value
    return env, secret


def git_login(session: Session, box: SecretBox, credential_id: int | None, user_id: int) -> GitLogin | None:
    """The studio's git credential, else the user's first git-capable one (as the spec says)."""
    cred: Credential | None
    if credential_id is not None:
        cred = _credential(session, credential_id, user_id, "gitCredentialId")
    else:
        cred = cred_store.first_of_types(session, user_id, GIT_TYPES)
        if cred is None:
            return None
    return GitLogin(cred.username, box.open(cred.secret))
