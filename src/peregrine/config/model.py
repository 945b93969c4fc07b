"""The server and client configuration files: YAML on disk, typed structs in memory.

A configuration is read once at start-up and every mistake is reported then, with the file and
the field (``server.yaml: flows.timeout: expected a number, got a string``), instead of
surfacing later as a strange failure. Unknown keys are refused: a misspelt ``poll_max`` silently
ignored would leave the default in force without anyone noticing. Relative paths are relative to
the directory of the file, so a configuration directory can be moved as a whole.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
import yaml

from peregrine.config.files import SECRET_MODE, write_atomic

#: Where the frontends serve agents; a URL given without a path gets it.
AGENT_PATH = "/agent"
DEFAULT_PORT = 8443

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class ConfigError(Exception):
    """A configuration that cannot be used. ``str()`` names the file and the field."""

    def __init__(self, path: Path | str | None, field: str | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.field = field
        self.problem = problem
        where = ": ".join(p for p in (self.path, field) if p)
        super().__init__(f"{where}: {problem}" if where else problem)


def normalize_frontend_url(url: str) -> str:
    """Check a frontend URL and give its canonical form (``wss://host[:port]/agent``).

    Only ``wss://`` is accepted: agents never talk to a frontend without TLS.
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "wss":
        raise ValueError(f"{url!r} must start with wss:// (agents only connect over TLS)")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host name")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} has a bad port: {exc}") from None
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r}: no user, query or fragment allowed in a frontend URL")
    path = parts.path if parts.path not in ("", "/") else AGENT_PATH
    return urlunsplit(("wss", parts.netloc.lower(), path, "", ""))


def _check_urls(field: str, urls: list[str]) -> list[str]:
    if not urls:
        raise ValueError(f"{field}: give at least one frontend URL (wss://host:port/agent)")
    out = []
    for i, url in enumerate(urls):
        try:
            out.append(normalize_frontend_url(url))
        except ValueError as exc:
            raise ValueError(f"{field}[{i}]: {exc}") from None
    return out


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every configuration struct: unknown keys are errors."""


class FlowDefaults(_Section):
    """Resource limits a collection gets when its request does not set them."""

    #: Seconds a whole collection may run on the client.
    timeout: PositiveFloat = 600.0
    #: Seconds without any progress (rows, logs, upload chunks) before a collection is failed.
    progress_timeout: PositiveFloat = 300.0
    #: Seconds a collection waits for its client to come online and start it before it
    #: expires (ends in Error); a collection's ``expires_in`` or its hunt's expiry overrides it.
    scheduled_expiry: PositiveFloat = 7 * 86400.0


class AgentLimits(_Section):
    """What one agent connection may cost a frontend, so one broken or hostile agent (or a
    stranger who has not logged in) cannot take memory or time from the others."""

    #: Bytes a connection may send before its login is accepted (the Hello is a few KB).
    handshake_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 64 * 1024
    #: Seconds from connecting to a completed login, waiting for a free handshake included.
    handshake_timeout: PositiveFloat = 10.0
    #: Logins in progress at once on a frontend process; more wait for a free slot.
    max_handshakes: Annotated[int, msgspec.Meta(ge=1)] = 1024
    #: New clients enrolled per second on a frontend process, and the burst allowed at once
    #: (a rollout of that many agents enrolls at full speed); a refused agent is told why and
    #: retries after its backoff.
    enrollments_per_second: PositiveFloat = 20.0
    enrollment_burst: Annotated[int, msgspec.Meta(ge=1)] = 2000
    #: What one connection may send, on average: past it the server stops reading from that
    #: agent for a while (nothing is dropped: the agent keeps it spooled). Cells are the
    #: values of result rows and log entries.
    bytes_per_second: Annotated[int, msgspec.Meta(ge=1 << 20)] = 16 << 20
    cells_per_second: Annotated[int, msgspec.Meta(ge=10_000)] = 250_000
    #: The largest upload an agent may announce (a collection's max_upload_bytes can lower it).
    max_upload_bytes: Annotated[int, msgspec.Meta(ge=1)] = 64 << 30


class LoginSettings(_Section):
    """Password logins on the API. Checking a password costs 64 MiB and tens of milliseconds
    of CPU (argon2, on purpose), so it gets its own threads and guessing is rate-limited."""

    #: Threads that check passwords; logins beyond them wait in a queue of ``max_waiting``,
    #: and more are refused at once (429 with Retry-After).
    hash_workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    max_waiting: NonNegativeInt = 16
    #: Failed logins allowed from one address (IPv6: one /64), and for one user name, within
    #: ``window`` seconds; past either, password logins wait (429) until the window allows.
    failures_per_address: Annotated[int, msgspec.Meta(ge=1)] = 20
    failures_per_user: Annotated[int, msgspec.Meta(ge=1)] = 10
    window: PositiveFloat = 300.0


class DrainSettings(_Section):
    """How a frontend of a cluster stops (SIGTERM): it answers ``/readyz`` "draining" for
    ``balancer_seconds`` so the balancer takes it out of its pool first (HAProxy: two failed
    checks, 2 s apart), then closes its agents' connections in batches spread over
    ``agents_seconds`` (they reconnect elsewhere a few at a time), each once what it was
    storing is stored and acknowledged. What still runs ``timeout`` seconds after the stop
    began is cancelled (its agent resends what was not acknowledged). A frontend without a
    cluster (no ``bus_url``) skips the two waits."""

    balancer_seconds: NonNegativeFloat = 6.0
    agents_seconds: NonNegativeFloat = 5.0
    timeout: PositiveFloat = 30.0


class AnalysisSettings(_Section):
    """Server-side analysis (``peregrine analyze``, notebooks, timelines): what one query may
    use. A request may ask for less, never more."""

    #: Seconds before a query is stopped.
    timeout: PositiveFloat = 60.0
    #: DuckDB's memory limit per query (MB); past it a query spills to disk, then fails.
    memory_mb: Annotated[int, msgspec.Meta(ge=64)] = 2048
    #: Rows a query returns at most; the result says when it was cut.
    max_rows: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    #: Threads DuckDB may use for one query.
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    #: Queries running at once in one server process; others wait within their time-out.
    concurrent: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    #: Write each result set's Parquet copy when its collection finishes (in one background
    #: thread), so the first query of a finished hunt is already fast.
    parquet_on_finish: bool = True
    #: Only result sets of at least this many rows get their copy when the collection
    #: finishes; smaller ones get it once a query has read them. A hunt's thousands of one-row
    #: answers each cost a DuckDB conversion and an fsync, taken from the hunt while it runs.
    parquet_on_finish_rows: Annotated[int, msgspec.Meta(ge=1)] = 100


class WebhookSettings(_Section):
    """Alerts POSTed as JSON to one URL (set here only: the API cannot change it)."""

    #: ``https://...`` (or ``http://``); empty: no webhook.
    url: str = ""
    #: Signs each POST (``X-Peregrine-Signature: sha256=<HMAC of timestamp.body>``); empty: none.
    secret: str = ""
    #: Seconds one attempt may take.
    timeout: PositiveFloat = 5.0
    #: Attempts after the first, 0.5 s apart and doubling (to 30 s), before an alert is given up.
    retries: NonNegativeInt = 5
    #: A CA certificate (PEM) to check an https URL against; empty: the system's.
    ca_cert_path: str = ""


class SyslogSettings(_Section):
    """Alerts to a syslog receiver as RFC 5424 messages."""

    #: ``host:port``; empty: no syslog.
    address: str = ""
    protocol: Literal["udp", "tcp"] = "udp"
    #: The RFC 5424 facility number (16: local0).
    facility: Annotated[int, msgspec.Meta(ge=0, le=23)] = 16
    app_name: Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,48}$")] = "peregrine"


class AlertSettings(_Section):
    """Alert rules over incoming events, and where their alerts are forwarded."""

    webhook: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    syslog: SyslogSettings = msgspec.field(default_factory=SyslogSettings)
    #: A file alerts are appended to as JSON lines (for a SIEM's shipper); empty: none.
    jsonl_path: str = ""
    #: Alerts each destination may have waiting; past it new ones are dropped (and counted).
    queue: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    #: Seconds between re-reads of the rules (a change made on another frontend applies then).
    rules_refresh: PositiveFloat = 5.0
    #: Install the built-in rules (enabled) when the server starts, unless stored already.
    builtin_rules: bool = True


class EventSettings(_Section):
    """Event monitoring: how long events are kept, and what each event query may use on an
    agent (its worker is throttled to ``cpu_limit`` percent of one core and restarted, with
    backoff, past ``max_memory_mb``)."""

    #: Days of events kept per client and artifact; older days are deleted by the leader.
    retention_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    cpu_limit: Annotated[float, msgspec.Meta(gt=0, le=100)] = 25.0
    max_memory_mb: Annotated[int, msgspec.Meta(ge=16)] = 512
    #: Rows per batch an agent sends, and the most seconds a row waits to be sent.
    batch_rows: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    batch_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0


class LogSettings(_Section):
    """The server's log; ``peregrine server --log-level/--log-format`` override it."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: A log file; empty: standard error.
    file: str = ""
    #: ``json``: one JSON object a line (time, level, logger, message, and the client_id,
    #: flow_id and hunt_id a line concerns), for log shippers; ``text``: for people.
    format: Literal["text", "json"] = "text"


class ServerConfig(_Section):
    """An embedded server: its frontends, TLS material, secrets and storage."""

    #: Where the server keeps its state; the other paths default to places inside it.
    data_dir: str
    #: The URLs agents use to reach the frontends (they pick one at random).
    public_urls: list[str]
    #: The deployment CA certificate (PEM file). Agents pin it.
    ca_cert_path: str
    #: The frontend's TLS certificate and key (PEM files; the key is owner-only).
    server_cert_path: str
    server_key_path: str
    #: Clients must present this on first contact to enroll.
    enrollment_secret: Annotated[str, msgspec.Meta(min_length=16)]
    #: The CA key (owner-only file). Only needed to issue certificates; may be kept offline.
    ca_key_path: str = ""
    bind_address: str = "127.0.0.1"
    port: Port = DEFAULT_PORT
    #: The REST API (HTTPS, the same certificate): where analysts and scripts connect.
    #: Port 0 turns it off.
    api_bind_address: str = "127.0.0.1"
    api_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = DEFAULT_PORT + 1
    #: SQLAlchemy URL; empty: SQLite at ``<data_dir>/peregrine.db``.
    datastore_url: str = ""
    #: Results, logs and uploads; empty: ``<data_dir>/filestore``.
    filestore_dir: str = ""
    #: Below this much free space on the filestore, agents are told to hold their data.
    min_free_bytes: NonNegativeInt = 1 << 30
    workers: Annotated[int, msgspec.Meta(ge=1)] = 1
    #: The bus between frontends; empty: within this host (one process, or ``--workers N``).
    #: ``redis://[:password@]host:port/db`` (or ``rediss://``): a cluster of frontends on
    #: several hosts, which also needs a PostgreSQL ``datastore_url`` and a shared filestore.
    bus_url: str = ""
    #: This frontend's name in a cluster (letters, digits, ``.-_:``); empty: host name and
    #: agent port.
    frontend_name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{0,100}$")] = ""
    flows: FlowDefaults = msgspec.field(default_factory=FlowDefaults)
    limits: AgentLimits = msgspec.field(default_factory=AgentLimits)
    login: LoginSettings = msgspec.field(default_factory=LoginSettings)
    drain: DrainSettings = msgspec.field(default_factory=DrainSettings)
    events: EventSettings = msgspec.field(default_factory=EventSettings)
    logging: LogSettings = msgspec.field(default_factory=LogSettings)
    analysis: AnalysisSettings = msgspec.field(default_factory=AnalysisSettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)

    def __post_init__(self) -> None:
        self.public_urls = _check_urls("public_urls", self.public_urls)
        if not self.data_dir:
            raise ValueError("data_dir: must not be empty")
        _check_bus(self.bus_url, self.datastore_url)

    def resolved(self, base_dir: Path) -> ServerConfig:
        """A copy with relative paths made absolute against ``base_dir`` and defaults filled."""
        data_dir = _absolute(base_dir, self.data_dir)
        datastore = self.datastore_url or f"sqlite:///{Path(data_dir) / 'peregrine.db'}"
        logging = self.logging
        if logging.file:
            logging = msgspec.structs.replace(logging, file=_absolute(base_dir, logging.file))
        return msgspec.structs.replace(
            self,
            data_dir=data_dir,
            ca_cert_path=_absolute(base_dir, self.ca_cert_path),
            ca_key_path=_absolute(base_dir, self.ca_key_path) if self.ca_key_path else "",
            server_cert_path=_absolute(base_dir, self.server_cert_path),
            server_key_path=_absolute(base_dir, self.server_key_path),
            datastore_url=datastore,
            filestore_dir=_absolute(
                base_dir, self.filestore_dir or str(Path(data_dir) / "filestore")
            ),
            logging=logging,
        )

    def ca_cert_pem(self) -> str:
        """The CA certificate text (what a client configuration pins)."""
        return _read_text(self.ca_cert_path, "ca_cert_path")

    def cluster_warnings(self) -> list[str]:
        """Settings that work but are probably not what a cluster wants."""
        if _is_postgres(self.datastore_url) and not self.bus_url:
            return [
                "datastore_url is PostgreSQL but bus_url is empty: frontends on other hosts "
                "will not hear of this one's agents, and leader work is coordinated only "
                "on this host; set bus_url: redis://host:6379/0 to run a cluster"
            ]
        return []


class ClientConfig(_Section):
    """An agent: where the frontends are, the pinned CA, and where it keeps its state."""

    #: Frontend URLs; the agent picks one at random and moves to another when one fails.
    server_urls: list[str]
    #: The deployment CA certificate (PEM text). The only CA the agent trusts.
    ca_cert: str
    #: Presented on first contact to enroll.
    enrollment_secret: Annotated[str, msgspec.Meta(min_length=16)]
    #: The agent's identity (private key, client id) and state. Owner-only.
    writeback_path: str = "agent/writeback.yaml"
    #: Results not yet acknowledged by the server wait here.
    spool_dir: str = "agent/spool"
    #: Reconnect backoff: first delay and ceiling, in seconds (jittered, exponential).
    poll_min: PositiveFloat = 1.0
    poll_max: PositiveFloat = 600.0
    #: The spool stops taking new results (the collection waits) beyond this size.
    max_spool_bytes: Annotated[int, msgspec.Meta(ge=1 << 20)] = 1 << 30
    #: Labels the client reports at enrollment (for targeting hunts).
    labels: list[str] = []
    #: Write the agent's metrics (Prometheus text format) to this file every
    #: ``metrics_interval`` seconds, e.g. into node_exporter's textfile directory; empty: none.
    metrics_file: str = ""
    metrics_interval: Annotated[float, msgspec.Meta(ge=1)] = 15.0
    #: Query workers kept started and warm, so a collection does not wait 0.3-0.6 s for one
    #: (each costs about 32 MB RSS, 17 MB of its own, while it waits); 2: an artifact's
    #: precondition and its source take one each. 0: every query starts its own.
    spare_workers: Annotated[int, msgspec.Meta(ge=0, le=8)] = 2
    #: Seconds without a query after which the spares are stopped (the next query starts them
    #: again); 0 keeps them for good.
    spare_worker_idle: Annotated[float, msgspec.Meta(ge=0)] = 300.0

    def __post_init__(self) -> None:
        self.server_urls = _check_urls("server_urls", self.server_urls)
        if self.poll_max < self.poll_min:
            raise ValueError(f"poll_max: {self.poll_max} is less than poll_min {self.poll_min}")
        if "-----BEGIN CERTIFICATE-----" not in self.ca_cert:
            raise ValueError("ca_cert: expected the deployment CA certificate in PEM form")

    def resolved(self, base_dir: Path) -> ClientConfig:
        """A copy with relative paths made absolute against ``base_dir``."""
        return msgspec.structs.replace(
            self,
            writeback_path=_absolute(base_dir, self.writeback_path),
            spool_dir=_absolute(base_dir, self.spool_dir),
            metrics_file=_absolute(base_dir, self.metrics_file) if self.metrics_file else "",
        )

    def in_state_dir(self, state_dir: Path) -> ClientConfig:
        """A copy keeping the identity and the spool in ``state_dir`` (a package's
        ``/var/lib/peregrine/agent``, with the configuration read-only in ``/etc``)."""
        return msgspec.structs.replace(
            self,
            writeback_path=str(state_dir / "writeback.yaml"),
            spool_dir=str(state_dir / "spool"),
        )


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _check_bus(bus_url: str, datastore_url: str) -> None:
    """A Redis bus means frontends on several hosts: they must share a PostgreSQL database."""
    if not bus_url:
        return
    parts = urlsplit(bus_url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"bus_url: {parts.scheme or bus_url!r} is not a bus; give redis://host:port/db "
            "(or rediss:// for TLS), or leave it empty for one host"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bus_url: bad port: {exc}") from None
    if not parts.hostname:
        raise ValueError("bus_url: no host name (redis://host:port/db)")
    if not _is_postgres(datastore_url):
        raise ValueError(
            "bus_url: a Redis bus joins frontends on several hosts, which must share one "
            "PostgreSQL datastore; set datastore_url: postgresql://user@host:port/database "
            "(SQLite is one host's file), or remove bus_url"
        )


def _absolute(base_dir: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).absolute())


def _read_text(path: str, field: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(path, field, f"cannot read: {exc.strerror or exc}") from exc


# -- reading ----------------------------------------------------------------------------------

_AT = re.compile(r"^(?P<msg>.*?) - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_OWN = re.compile(r"^(?P<field>[a-z_][\w.\[\]]*): (?P<msg>.+)$", re.S)

S = TypeVar("S", bound=_Section)


def _fields_at(cls: type[Any], path: str) -> list[str]:
    """The field names a struct accepts at a dotted path (to suggest them for a typo)."""
    for part in filter(None, re.sub(r"\[\d+\]", "", path).split(".")):
        info = msgspec.inspect.type_info(cls)
        if not isinstance(info, msgspec.inspect.StructType):
            return []
        match = [f for f in info.fields if f.name == part]
        if not match or not isinstance(match[0].type, msgspec.inspect.StructType):
            return []
        cls = match[0].type.cls
    return list(getattr(cls, "__struct_fields__", ()))


def _explain(cls: type[Any], error: msgspec.ValidationError) -> tuple[str | None, str]:
    """Turn msgspec's message into (field, problem) in the words of a configuration file."""
    text = str(error)
    m = _AT.match(text)
    path, msg = (m["path"].lstrip("."), m["msg"]) if m else ("", text)
    if u := _UNKNOWN.match(msg):
        allowed = ", ".join(_fields_at(cls, path))
        field = f"{path}.{u['name']}" if path else u["name"]
        return field, f"unknown field (allowed here: {allowed})"
    if r := _MISSING.match(msg):
        return (f"{path}.{r['name']}" if path else r["name"]), "required field is missing"
    if not path and (o := _OWN.match(msg)):
        return o["field"], o["msg"]
    msg = msg.replace("Expected `", "expected `")
    msg = msg.replace("`array`", "`list`").replace("`object`", "`mapping`")
    return path or None, msg


def parse_config(cls: type[S], data: Any, source: Path | str | None = None) -> S:
    """Validate plain data (decoded YAML) into a config struct; ConfigError names the field."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(source, None, f"expected a mapping of settings, the file is {kind}")
    try:
        return msgspec.convert(data, cls, strict=True)
    except msgspec.ValidationError as exc:
        field, problem = _explain(cls, exc)
        raise ConfigError(source, field, problem) from None


def _load_yaml(path: Path, kind: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            path,
            None,
            f"{kind} configuration file not found (create one with `peregrine config generate`)",
        ) from None
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, None, f"not valid YAML{where}: {problem}") from None


def load_server_config(path: Path) -> ServerConfig:
    """Read and check a server configuration; paths in it come back absolute."""
    cfg = parse_config(ServerConfig, _load_yaml(path, "server"), path)
    return cfg.resolved(path.absolute().parent)


def load_client_config(path: Path) -> ClientConfig:
    """Read and check a client configuration; paths in it come back absolute."""
    cfg = parse_config(ClientConfig, _load_yaml(path, "client"), path)
    return cfg.resolved(path.absolute().parent)


# -- writing ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PEM) as literal blocks, so the file stays readable and diffable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(cfg: msgspec.Struct, header: str = "") -> str:
    """A configuration as YAML text, fields in declaration order, with an optional comment."""
    body = yaml.dump(
        msgspec.to_builtins(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False
    )
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + body


def save_config(cfg: msgspec.Struct, path: Path, header: str = "") -> None:
    """Write a configuration atomically, owner-only (it holds the enrollment secret)."""
    write_atomic(path, to_yaml(cfg, header), SECRET_MODE)


#: Field names whose values are secrets (masked by ``peregrine config show``).
SECRET_FIELDS = frozenset({"enrollment_secret"})


def hide_password(url: str) -> str:
    """``url`` with any password replaced by stars (for logs and ``config show``)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def masked(cfg: msgspec.Struct) -> dict[str, Any]:
    """A configuration as plain data with secrets hidden and PEM blocks abbreviated."""
    # Here, not at the top: the PKI module loads cryptography.x509, which an agent reading its
    # configuration does not need.
    from peregrine.config.pki import PKIError, fingerprint

    data: dict[str, Any] = msgspec.to_builtins(cfg)
    for key, value in data.items():
        if key in SECRET_FIELDS and value:
            data[key] = "********"
        elif key.endswith("_url") and isinstance(value, str):
            data[key] = hide_password(value)
        elif isinstance(value, str) and "-----BEGIN CERTIFICATE" in value:
            try:
                data[key] = f"<PEM certificate, SHA-256 {fingerprint(value)}>"
            except PKIError:
                data[key] = "<PEM certificate (unreadable)>"
    return data
