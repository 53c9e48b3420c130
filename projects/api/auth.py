"""`Authorization: Bearer <token>` with personal, organisation-scoped API tokens."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from projects.models import ApiToken, Membership, hash_secret

#: last_used_at is written at most this often per token (saves a write per request).
LAST_USED_RESOLUTION = timedelta(seconds=60)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use `Authorization: Bearer <token>`."
            )
        try:
            secret = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("The token contains invalid characters.") from None
        # get(), not first(): both lookups are unique, and first() would order (and compile
        # the ordering of) what can only be one row, on every API request.
        try:
            token = ApiToken.objects.active().select_related("user", "organization").get(token_hash=hash_secret(secret))
        except ApiToken.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.") from None
        try:
            membership = Membership.objects.for_org(token.organization).get(user=token.user)
        except Membership.DoesNotExist:
            membership = None
        if not token.user.is_active or membership is None:
            raise exceptions.AuthenticationFailed("This token's owner is no longer a member of its organisation.")
        # The organisation's views need this membership next (OrgScopedMixin.resolve_org): one
        # query instead of two on every token request.
        membership.organization, membership.user = token.organization, token.user
        token.membership = membership
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.for_org(token.organization).filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API token of one organisation."}
