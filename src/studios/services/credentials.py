"""What credential requests mean: create, read, change and delete one's own credentials,
the secret sealed on the way in and never shown again. Only the owner (or an admin) may see
or use a credential."""

from __future__ import annotations

from sqlalchemy.orm import Session

from studios.db.models import Credential, utcnow
from studios.errors import NotFound
from studios.schemas.credentials import Credential as CredentialView
from studios.schemas.credentials import CredentialCreateRequest, CredentialPatchRequest
from studios.services import views
from studios.services.keys import Caller
from studios.services.secrets import SecretBox
from studios.store import credentials as cred_store
from studios.store import users as user_store


def view(session: Session, cred: Credential) -> CredentialView:
    """The credential as the API shows it (its owner's name, never its secret)."""
    owner = user_store.get(session, cred.owner_id)
    assert owner is not None
    return views.credential(cred, owner)


def get(session: Session, caller: Caller, credential_id: int) -> Credential:
    cred = cred_store.get(session, credential_id)
    if cred is None or (cred.owner_id != caller.id and not caller.is_admin):
        raise NotFound(f"Credential {credential_id} was not found.")
    return cred


def create(session: Session, box: SecretBox, caller: Caller, body: CredentialCreateRequest) -> Credential:
    cred = cred_store.add(session, {"owner_id": caller.id, "name": body.name, "type": body.type, "username": body.username, "description": body.description, "remote_host_id": body.remote_host_id, "is_default": bool(body.default), "secret": box.seal(body.password)})
    session.commit()
    return cred


def update(session: Session, box: SecretBox, caller: Caller, credential_id: int, body: CredentialPatchRequest | CredentialCreateRequest, replace: bool) -> Credential:
    cred = get(session, caller, credential_id)
    sent = body.model_fields_set if not replace else set(type(body).model_fields)
    for field in ("name", "type", "username", "description", "remote_host_id"):
        if field in sent:
            setattr(cred, field, getattr(body, field))
    if "default" in sent:
        cred.is_default = bool(body.default)
    if "password" in sent and body.password is not None:
        cred.secret = box.seal(body.password)
    cred.updated_at = utcnow()
    session.commit()
    return cred


def delete(session: Session, caller: Caller, credential_id: int) -> None:
    cred_store.delete(session, get(session, caller, credential_id))
    session.commit()


def page(session: Session, caller: Caller, types: list[str] | None, name: str | None, order: str, descending: bool, limit: int, page_num: int) -> tuple[list[Credential], int]:
    return cred_store.page(session, caller.id, types, name, order, descending, limit, (page_num - 1) * limit)


def reseal_all(session: Session, box: SecretBox) -> tuple[int, int]:
    """Re-encrypt every stored secret with the newest secret key (in the caller's transaction). Returns (resealed,
    unreadable): an unreadable one was sealed under a key no longer configured and is left as it is."""
    done = failed = 0
    for cred in cred_store.every(session):
        try:
            cred.secret = box.reseal(cred.secret)
            done += 1
        except ValueError:
            failed += 1
    return done, failed
