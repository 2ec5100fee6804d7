"""Bearer-token authentication: the one token in BENCH_SCIM_TOKEN."""

import hmac
import os

from django.contrib.auth.models import AnonymousUser

TOKEN = os.environ.get("BENCH_SCIM_TOKEN", "")


class ScimClient(AnonymousUser):
    """The provisioning client: authenticated, without a database row."""

    @property
    def is_authenticated(self):
        return True


class BearerTokenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and TOKEN and hmac.compare_digest(token, TOKEN)
        request.user = ScimClient() if ok else AnonymousUser()
        return self.get_response(request)
