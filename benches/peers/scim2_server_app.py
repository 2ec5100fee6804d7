"""scim2-server (PyPI) as a WSGI application for gunicorn, in memory, with one
bearer token from BENCH_SCIM_TOKEN. Built the way the package's own
``scim2-server`` command builds it, minus its stdlib development server."""

import os
import secrets

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME
from scim2_server.testserver.application import BearerTokenApplication
from scim2_server.utils import load_default_resource_types
from scim2_server.utils import load_default_schemas
from scim2_server.utils import load_default_service_provider_config

config = load_default_service_provider_config()
config.authentication_schemes = [
    *(config.authentication_schemes or []),
    BEARER_TOKEN_SCHEME,
]
provider = ScimProvider.from_discovery(
    load_default_schemas().values(),
    load_default_resource_types().values(),
    config=config,
)
service = ScimService(provider, secret=secrets.token_urlsafe(32))
application = BearerTokenApplication(
    InMemoryStorage(),
    provider,
    service=service,
    bearer_tokens=[os.environ["BENCH_SCIM_TOKEN"]],
)
