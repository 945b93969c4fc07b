"""Configuration of servers and agents, and the deployment's PKI (CA and TLS certificates).

What creates a deployment (``generate`` and the other names of :mod:`peregrine.config.generate`)
is imported on first use (module ``__getattr__``): it loads ``cryptography.x509``, which an agent,
reading its configuration and pinning the CA with the standard ``ssl`` module, does not need.
Import those names from here: importing the module ``peregrine.config.generate`` directly first
would leave the attribute ``peregrine.config.generate`` naming the module, not the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peregrine.config.model import (
    ClientConfig,
    ConfigError,
    FlowDefaults,
    LogSettings,
    ServerConfig,
    load_client_config,
    load_server_config,
    masked,
    normalize_frontend_url,
)
from peregrine.config.tls import (
    client_ssl_context,
    pinned_ssl_context,
    server_ssl_context,
    shrink_tls_read_buffers,
)

if TYPE_CHECKING:
    from peregrine.config.generate import (
        CA_CERT_FILE,
        CA_KEY_FILE,
        CLIENT_FILE,
        SERVER_CERT_FILE,
        SERVER_FILE,
        SERVER_KEY_FILE,
        ConfigExistsError,
        GeneratedConfig,
        check_server_pki,
        default_data_dir,
        default_public_url,
        default_server_config,
        export_client_config,
        generate,
        issue_frontend_cert,
        write_client_config,
    )

#: Names exported from :mod:`peregrine.config.generate`, imported when first asked for.
_FROM_GENERATE = frozenset(
    {
        "CA_CERT_FILE",
        "CA_KEY_FILE",
        "CLIENT_FILE",
        "SERVER_CERT_FILE",
        "SERVER_FILE",
        "SERVER_KEY_FILE",
        "ConfigExistsError",
        "GeneratedConfig",
        "check_server_pki",
        "default_data_dir",
        "default_public_url",
        "default_server_config",
        "export_client_config",
        "generate",
        "issue_frontend_cert",
        "write_client_config",
    }
)


def __getattr__(name: str) -> Any:
    if name in _FROM_GENERATE:
        import importlib

        module = importlib.import_module("peregrine.config.generate")
        # Importing the module set this package's attribute ``generate`` to it: every name,
        # the function ``generate`` too, is bound here now, so later look-ups find them.
        globals().update({n: getattr(module, n) for n in _FROM_GENERATE})
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_GENERATE})


__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CLIENT_FILE",
    "SERVER_CERT_FILE",
    "SERVER_FILE",
    "SERVER_KEY_FILE",
    "ClientConfig",
    "ConfigError",
    "ConfigExistsError",
    "FlowDefaults",
    "GeneratedConfig",
    "LogSettings",
    "ServerConfig",
    "check_server_pki",
    "client_ssl_context",
    "default_data_dir",
    "default_public_url",
    "default_server_config",
    "export_client_config",
    "generate",
    "issue_frontend_cert",
    "load_client_config",
    "load_server_config",
    "masked",
    "normalize_frontend_url",
    "pinned_ssl_context",
    "server_ssl_context",
    "shrink_tls_read_buffers",
    "write_client_config",
]
