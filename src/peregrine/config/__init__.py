"""Configuration of servers and agents, and the deployment's PKI (CA and TLS certificates)."""

from peregrine.config.generate import (
    CLIENT_FILE,
    SERVER_FILE,
    ConfigExistsError,
    GeneratedConfig,
    check_server_pki,
    default_data_dir,
    default_server_config,
    export_client_config,
    generate,
    issue_frontend_cert,
    write_client_config,
)
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

__all__ = [
    "CLIENT_FILE",
    "SERVER_FILE",
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
