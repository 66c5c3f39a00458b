"""One error body for every 4xx (and the rare 5xx) the API returns:

{"error": {"code": "...", "message": "...", "details": ...}}
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja.errors import AuthenticationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError

from governance import hygiene

if TYPE_CHECKING:
    from ninja import NinjaAPI

logger = logging.getLogger("tenure.api")

# Codes: stable strings clients can branch on.
BAD_REQUEST = "bad_request"
MALFORMED_JSON = "malformed_json"
VALIDATION_FAILED = "validation_failed"
UNAUTHENTICATED = "unauthenticated"
TOKEN_INVALID = "token_invalid"  # noqa: S105 - a message or a name, not a secret
TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a message or a name, not a secret
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
CONFLICT = "conflict"
TOO_LARGE = "payload_too_large"
RATE_LIMITED = "rate_limited"
INTERNAL = "internal_error"

ERR_MALFORMED_JSON = "The request body is not valid JSON."
ERR_VALIDATION = "The request did not validate; see details."
ERR_TOKEN_MISSING = "Send an API token: Authorization: Bearer <token>."  # noqa: S105 - a message or a name, not a secret
ERR_TOKEN_INVALID = "The API token is not valid."  # noqa: S105 - a message or a name, not a secret
ERR_TOKEN_REVOKED = "The API token was revoked."  # noqa: S105 - a message or a name, not a secret
ERR_NO_SUCH_WORKFLOW = "There is no workflow called “{slug}”."
ERR_WORKFLOW_SCOPE = "This token is not allowed on the workflow “{slug}”."
ERR_VERB_SCOPE = "This token does not have the “{verb}” scope."
ERR_NOT_FOUND = "Not found."
ERR_METHOD = "Method not allowed."
ERR_TOO_LARGE = "The request body is larger than {limit} bytes."
ERR_RATE_LIMITED = "Rate limit of {limit} requests per minute exceeded; retry in {seconds} s."
ERR_BAD_LENGTH = "The Content-Length header is not a byte count."
ERR_NUL = "NUL characters (\\u0000) are not accepted in paths, queries or bodies."
ERR_KEY_TOO_LONG = "The Idempotency-Key header is longer than 200 characters."
ERR_INTERNAL = "Something went wrong on our side. The request id identifies it in our logs."

_CODE_FOR_STATUS = {
    400: BAD_REQUEST,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: CONFLICT,
    413: TOO_LARGE,
    422: VALIDATION_FAILED,
    429: RATE_LIMITED,
}


class ApiError(Exception):
    """Raise from a route or a check to answer with the error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    response = JsonResponse(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _location(loc: Any) -> list[Any]:
    """ninja prefixes body errors with the parameter's name (always ``body`` here):
    ["body", "body", "items", 2] reads better as ["body", "items", 2]."""
    loc = list(loc)
    if loc[:2] == ["body", "body"]:
        return ["body", *loc[2:]]
    return loc


def _ninja_validation(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    details = [
        {"loc": _location(error.get("loc", ())), "msg": error.get("msg", ""),
         "type": error.get("type", "")}
        for error in exc.errors
    ]  # fmt: skip
    return error_response(422, VALIDATION_FAILED, ERR_VALIDATION, details)


def _django_validation(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    details = exc.message_dict if hasattr(exc, "error_dict") else None
    message = "; ".join(exc.messages) if not details else ERR_VALIDATION
    return error_response(422, VALIDATION_FAILED, message, details)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code
    if isinstance(exc, Throttled):
        headers = {"Retry-After": str(int(exc.wait or 60))}
        return error_response(429, RATE_LIMITED, str(exc), None, headers)
    if isinstance(exc, AuthenticationError):
        return error_response(
            401, UNAUTHENTICATED, ERR_TOKEN_MISSING, None, {"WWW-Authenticate": "Bearer"}
        )
    if status == 400 and str(exc).startswith("Cannot parse request body"):
        cause = exc.__cause__
        if isinstance(cause, ApiError):  # the parser refused a value it could parse
            return _api_error(request, cause)
        if isinstance(cause, ValueError) and str(cause) == hygiene.ERR_NOT_FINITE:
            return error_response(400, MALFORMED_JSON, hygiene.ERR_NOT_FINITE)
        return error_response(400, MALFORMED_JSON, ERR_MALFORMED_JSON)
    return error_response(status, _CODE_FOR_STATUS.get(status, BAD_REQUEST), str(exc))


def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    message = str(exc) or ERR_NOT_FOUND
    return error_response(404, NOT_FOUND, message)


def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return error_response(403, FORBIDDEN, str(exc) or FORBIDDEN)


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled API error on %s %s", request.method, request.path)
    return error_response(500, INTERNAL, ERR_INTERNAL)


def install_exception_handlers(api: NinjaAPI) -> None:
    """Replace ninja's defaults: every error leaves with the same body."""
    api.add_exception_handler(Exception, _unexpected)
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(NinjaValidationError, _ninja_validation)
    api.add_exception_handler(DjangoValidationError, _django_validation)
    api.add_exception_handler(HttpError, _http_error)
    api.add_exception_handler(Http404, _not_found)
    api.add_exception_handler(ObjectDoesNotExist, _not_found)
    api.add_exception_handler(PermissionDenied, _forbidden)
