"""Who is calling the HTTP API: the service token, one user's JWT, or anyone on loopback.

- `API_TOKEN`: `Authorization: Bearer <API_TOKEN>` may do everything.
- `JWT_SECRET`: an HS256 token whose `sub` is a userId (and which carries `exp`) may act for
  that user only; another user's session answers 404, as if it did not exist.
- Neither: the API serves on a loopback address only (checked at startup) and trusts its callers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import jwt
from pydantic import SecretStr

from bots.http.errors import ApiError

JWT_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller; `user_id` None means full access."""

    user_id: str | None

    @property
    def owner(self) -> str | None:
        """The owner every session lookup must match (None: any)."""
        return self.user_id

    def require_user(self, user_id: str) -> None:
        """A user's token acts for that user alone."""
        if self.user_id is not None and self.user_id != user_id:
            raise ApiError(403, "forbidden", "This token may only act for its own userId.")

    def require_full_access(
        self, message: str = "This needs the service token (API_TOKEN)."
    ) -> None:
        if self.user_id is not None:
            raise ApiError(403, "forbidden", message)


FULL_ACCESS = Principal(user_id=None)


class Authenticator:
    def __init__(self, api_token: SecretStr | None, jwt_secret: SecretStr | None) -> None:
        self._api_token = api_token.get_secret_value().encode() if api_token else None
        self._jwt_secret = jwt_secret.get_secret_value() if jwt_secret else None

    @property
    def is_open(self) -> bool:
        return self._api_token is None and self._jwt_secret is None

    def authenticate(self, authorization: str | None) -> Principal:
        if self.is_open:
            return FULL_ACCESS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Send Authorization: Bearer <token>.")
        token = token.strip()
        if self._api_token is not None and hmac.compare_digest(token.encode(), self._api_token):
            return FULL_ACCESS
        if self._jwt_secret is not None:
            return Principal(user_id=self._user_of(token, self._jwt_secret))
        raise _unauthorized("The token is not valid.")

    @staticmethod
    def _user_of(token: str, secret: str) -> str:
        try:
            claims = jwt.decode(
                token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("The token has expired.") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("The token is not valid.") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise _unauthorized("The token's sub must be a userId.")
        return subject


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
