"""Auth schemes: one module per scheme family, all behind ``AuthScheme``.

Importing this package registers every built-in scheme.
"""

from proxy.auth import oauth2  # noqa: F401, I001  (registers the OAuth2 token schemes)
from proxy.auth import simple  # noqa: F401  (registers none/static/basic/bearer)
from proxy.auth import apliiq  # noqa: F401  (registers apliiq)
from proxy.auth import aws_sigv4  # noqa: F401  (registers aws-sigv4)
from proxy.auth import quicklizard  # noqa: F401  (registers quicklizard)
from proxy.auth import recipe  # noqa: F401  (registers hmac)
from proxy.auth import threeclicks  # noqa: F401  (registers threeclicks-simple/-strict)
from proxy.auth import threecommas  # noqa: F401  (registers threecommas)
from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
from proxy.auth.registry import SCHEMES, all_injected_headers, register, scheme_class

__all__ = [
    "SCHEMES",
    "AuthResult",
    "AuthScheme",
    "SchemeContext",
    "SchemeOptions",
    "UpstreamRequest",
    "all_injected_headers",
    "register",
    "scheme_class",
]
