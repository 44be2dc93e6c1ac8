"""CRUD /v1/users (admins only); the last active admin cannot be removed or demoted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from facewatch.errors import Conflict
from serve_apps.api.deps import Admin, Pages, Uow
from serve_apps.api.list_queries import UserQuery
from serve_apps.api.routes._common import apply_patch, page_out
from serve_apps.api.schemas import DbId, Page, UserIn, UserOut, UserPatch
from storage import orm
from storage.passwords import hash_password
from storage.unit_of_work import UnitOfWork

router = APIRouter(prefix="/users", tags=["users"])


def _keep_an_admin(uow: UnitOfWork, user: orm.User) -> None:
    if user.role == "admin" and user.active and uow.users.count_admins() <= 1:
        raise Conflict("this is the last active admin; create another admin first", param="id")


@router.post("", status_code=201, response_model=UserOut)
def create_user(body: UserIn, uow: Uow, _: Admin) -> orm.User:
    password = body.password.get_secret_value() if body.password is not None else None
    user = uow.users.add(orm.User(**body.model_dump(mode="json", exclude={"password"}),
                                  password_hash=hash_password(password) if password is not None else None))
    uow.commit()
    return user


@router.get("", response_model=Page[UserOut])
def list_users(uow: Uow, _: Admin, paging: Pages, query: Annotated[UserQuery, Query()]) -> Page[UserOut]:
    filters = query.model_dump(exclude_none=True)
    page = uow.users.list_page(filters, paging.limit, paging.cursor)
    return page_out(page, UserOut)


@router.get("/{user_id}", response_model=UserOut)
def get_user(user_id: DbId, uow: Uow, _: Admin) -> orm.User:
    return uow.users.get(user_id)


@router.patch("/{user_id}", response_model=UserOut)
def update_user(user_id: DbId, body: UserPatch, uow: Uow, _: Admin) -> orm.User:
    user = uow.users.get(user_id)
    if (body.role is not None and body.role != "admin") or body.active is False:
        _keep_an_admin(uow, user)
    apply_patch(user, body)
    if body.active is False:
        uow.sessions.revoke_for_user(user.id)  # a deactivated user's console sessions end now
    uow.commit()
    return user


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: DbId, uow: Uow, _: Admin) -> Response:
    user = uow.users.get(user_id)
    _keep_an_admin(uow, user)
    uow.users.delete(user)
    uow.commit()
    return Response(status_code=204)
