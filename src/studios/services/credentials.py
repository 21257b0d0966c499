"""What credential requests mean: create, read, change and delete one's own credentials,
the secret sealed on the way in and never shown again. Only the owner (or an admin) may see
or use a credential."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from studios.db.models import Credential, utcnow
from studios.errors import NotFound
from studios.schemas.credentials import CredentialCreateRequest, CredentialPatchRequest
from studios.services.keys import Caller
from studios.services.secrets import SecretBox

ORDER = {"updated_at": Credential.updated_at, "created_at": Credential.created_at, "name": Credential.name}


def get(session: Session, caller: Caller, credential_id: int) -> Credential:
    cred = session.get(Credential, credential_id)
    if cred is None or (cred.owner_id != caller.id and not caller.is_admin):
        raise NotFound(f"Credential {credential_id} was not found.")
    return cred


def create(session: Session, box: SecretBox, caller: Caller, body: CredentialCreateRequest) -> Credential:
    cred = Credential(owner_id=caller.id, name=body.name, type=body.type, username=body.username, description=body.description, remote_host_id=body.remote_host_id, is_default=bool(body.default), secret=box.seal(body.password))
    session.add(cred)
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
    session.delete(get(session, caller, credential_id))
    session.commit()


def page(session: Session, caller: Caller, types: list[str] | None, name: str | None, order: str, descending: bool, limit: int, page_num: int) -> tuple[list[Credential], int]:
    query = select(Credential).where(Credential.owner_id == caller.id)
    if types:
        query = query.where(Credential.type.in_(types))
    if name:
        query = query.where(Credential.name.contains(name, autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = ORDER[order]
    query = query.order_by(column.desc() if descending else column.asc(), Credential.id)
    return list(session.scalars(query.limit(limit).offset((page_num - 1) * limit))), total


def reseal_all(session: Session, box: SecretBox) -> tuple[int, int]:
    """Re-encrypt every stored secret with the newest secret key (committed). Returns (resealed,
    unreadable): an unreadable one was sealed under a key no longer configured and is left as it is."""
    done = failed = 0
    for cred in session.scalars(select(Credential)):
        try:
            cred.secret = box.reseal(cred.secret)
            done += 1
        except ValueError:
            failed += 1
    session.commit()
    return done, failed
