"""GET/POST /v1/tokens, DELETE /v1/tokens/{id}: API tokens, stored hashed, shown once; admins see and revoke
every user's, others their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response

from facewatch.errors import Conflict, Forbidden, NotFound
from serve_apps.api.deps import Pages, Uow, Viewer
from serve_apps.api.schemas import DbId, Page, TokenCreated, TokenIn, TokenOut
from storage import orm
from storage.tokens import admin_tokens_left, issue_token

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(body: TokenIn, uow: Uow, caller: Viewer) -> TokenCreated:
    user_id = body.user_id if body.user_id is not None else caller.user_id
    if user_id != caller.user_id and caller.role != "admin":
        raise Forbidden("only admins may create tokens for other users", param="user_id")
    user = uow.users.get_many([user_id], param="user_id")[0]
    expires = datetime.now(UTC) + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    row, plain = issue_token(uow, user, name=body.name, expires_at=expires)
    uow.commit()
    return TokenCreated(
        id=row.id, user_id=user.id, username=user.username, name=row.name, prefix=row.prefix,
        expires_at=row.expires_at, created_at=row.created_at, token=plain,
    )


def _listed(row: orm.Token) -> TokenOut:
    return TokenOut(id=row.id, user_id=row.user_id, username=row.user.username, name=row.name, prefix=row.prefix,
                    expires_at=row.expires_at, created_at=row.created_at, last_used_at=row.last_used_at)


@router.get("", response_model=Page[TokenOut])
def list_tokens(uow: Uow, caller: Viewer, paging: Pages, user_id: DbId | None = None) -> Page[TokenOut]:
    """Admins: every token (or one user's with `user_id`); others: their own, whatever `user_id` says."""
    owner = user_id if caller.role == "admin" else caller.user_id
    page = uow.tokens.page(uow.tokens.listing(owner), paging.limit, paging.cursor)
    return Page(results=[_listed(t) for t in page.items], next_cursor=page.next_cursor)


@router.delete("/{token_id}", status_code=204)
def delete_token(token_id: DbId, uow: Uow, caller: Viewer) -> Response:
    row = uow.tokens.get(token_id)
    if row.user_id != caller.user_id and caller.role != "admin":
        raise NotFound(f"token {token_id} does not exist", param="id")
    if admin_tokens_left(uow) > 0 and admin_tokens_left(uow, without_token_id=row.id) == 0:
        raise Conflict("this is the last token of any active admin: without it nobody could administer the "
                       "installation; create another admin token first (or, on the server, run "
                       "`facewatch admin-token`)", param="id")
    uow.tokens.delete(row)
    uow.commit()
    return Response(status_code=204)
