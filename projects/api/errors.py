"""One error body for every API failure:

{"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"name": ["..."]}}}
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from projects.actions import ActionError

ACTION_STATUS = {"not_found": 404, "duplicate": 409, "conflict": 409, "forbidden": 403}


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, ActionError):
        code = exc.code
        status_code = ACTION_STATUS.get(code, 400)
        fields = {exc.field: [exc.message]} if exc.field else {}
        return Response(
            {"error": {"status": status_code, "code": code, "message": exc.message, "fields": fields}},
            status=status_code,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    fields = {}
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        fields = detail
        message = "Some fields are not valid: " + _flatten(detail)
    else:
        message = _flatten(detail.get("detail", detail) if isinstance(detail, dict) else detail)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.APIException) and isinstance(exc.detail, exceptions.ErrorDetail):
        code = exc.detail.code
    response.data = {"error": {"status": response.status_code, "code": code, "message": message, "fields": fields}}
    return response


def error_response(message: str, status_code: int = status.HTTP_400_BAD_REQUEST, code: str = "invalid") -> Response:
    return Response(
        {"error": {"status": status_code, "code": code, "message": message, "fields": {}}}, status=status_code
    )
