"""Every message between an agent and a frontend: typed, versioned, size-limited.

Messages are msgspec structs, tagged by ``kind`` and sent as msgpack in binary WebSocket frames.
A frame that does not decode to one of these (unknown kind, missing field, wrong type) is a
protocol error: the connection is closed with a logged reason and nothing else is affected.

The handshake::

    server → Challenge(nonce)
    agent  → Hello(client_id, public_key, signature over nonce, [enrollment secret])
    server → Welcome | Rejected(reason) | Reidentify (a clone: make a new identity)

After it, the agent sends a per-collection ordered stream (``FlowMessage`` subclasses carrying
``flow_id`` and ``seq``); the server acknowledges the highest ``seq`` it has durably stored with
``Ack``. The agent keeps everything not acknowledged in its on-disk spool and sends it again
after a reconnect; the server ignores a ``seq`` it already has. Nothing is lost, nothing doubled.
"""

from __future__ import annotations

from typing import Any

import msgspec

PROTOCOL_VERSION = 1

#: The largest frame either side accepts; larger ones close the connection.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Upload chunks are this size at most, so a chunk always fits in a frame.
UPLOAD_CHUNK_BYTES = 1024 * 1024


class Message(msgspec.Struct, tag_field="kind"):
    """Base of every message.

    Unknown fields are ignored, so a newer peer can add optional fields without breaking an
    older one; unknown kinds, missing fields and wrong types are refused."""


# -- handshake --------------------------------------------------------------------------------


class Challenge(Message, tag="challenge"):
    nonce: bytes
    server_time: float
    protocol: int = PROTOCOL_VERSION


class Hello(Message, tag="hello"):
    client_id: str
    public_key: bytes
    #: Ed25519 signature over ``nonce + client_id`` (proves possession of the key).
    signature: bytes
    agent_version: str
    protocol: int = PROTOCOL_VERSION
    #: Only needed the first time (enrollment); checked against the deployment's secret.
    enrollment_secret: str | None = None
    #: Hunts this client has already been scheduled for (the server skips them).
    seen_hunts: list[str] = []


class Welcome(Message, tag="welcome"):
    client_id: str
    server_time: float
    enrolled: bool = False


class Rejected(Message, tag="rejected"):
    reason: str
    #: Seconds the agent should wait before trying again (None: its own backoff).
    retry_after: float | None = None


class Reidentify(Message, tag="reidentify"):
    """Another live agent holds this client id (a cloned machine): make a new identity."""

    reason: str


# -- server → agent ---------------------------------------------------------------------------


class ArtifactCall(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class CollectionRequest(Message, tag="collect"):
    flow_id: str
    artifacts: list[ArtifactCall]
    #: The definitions of every artifact the collection runs or uses as a table, so agents run
    #: exactly what the server has, whatever their own library version.
    definitions: list[dict[str, Any]]
    permissions: list[str] = []
    timeout: float | None = None
    max_rows: int | None = None
    max_upload_bytes: int | None = None
    cpu_limit: float | None = None
    #: Rows per batch and seconds between batches (whichever comes first).
    batch_rows: int = 1000
    batch_seconds: float = 1.0
    #: The hunt this collection belongs to; the agent remembers it and names it in its Hello.
    hunt_id: str | None = None


class CancelCollection(Message, tag="cancel"):
    flow_id: str
    reason: str = "cancelled"


class Ack(Message, tag="ack"):
    """The server has durably stored everything of ``flow_id`` up to ``seq``."""

    flow_id: str
    seq: int


class UploadResume(Message, tag="upload_resume"):
    """How much of an upload the server already has; the agent continues from ``offset``."""

    flow_id: str
    upload_id: str
    offset: int


class StorageUnavailable(Message, tag="storage_unavailable"):
    """The server cannot store results now (disk full): keep them spooled and retry later."""

    retry_after: float


# -- agent → server: the per-flow ordered stream ----------------------------------------------


class FlowMessage(Message):
    flow_id: str
    seq: int


class FlowStarted(FlowMessage, tag="flow_started"):
    started: float


class ResultBatch(FlowMessage, tag="rows"):
    artifact: str
    source: str
    columns: list[str]
    rows: list[list[Any]]


class LogBatch(FlowMessage, tag="logs"):
    #: Each entry: {"time": float, "level": str, "message": str}.
    entries: list[dict[str, Any]]


class SourceFinished(FlowMessage, tag="source_done"):
    artifact: str
    source: str
    status: str  # finished, skipped, error
    rows: int
    error: str | None = None
    elapsed: float = 0.0


class UploadStart(FlowMessage, tag="upload_start"):
    upload_id: str
    path: str
    size: int
    sha256: str


class UploadChunk(Message, tag="upload_chunk"):
    """Not part of the seq stream: chunks are resumable by offset instead."""

    flow_id: str
    upload_id: str
    offset: int
    data: bytes
    last: bool = False


class FlowFinished(FlowMessage, tag="flow_done"):
    status: str  # finished, error, cancelled
    error: str | None = None
    finished: float = 0.0


AgentMessage = (
    Hello
    | FlowStarted
    | ResultBatch
    | LogBatch
    | SourceFinished
    | UploadStart
    | UploadChunk
    | FlowFinished
)
ServerMessage = (
    Challenge
    | Welcome
    | Rejected
    | Reidentify
    | CollectionRequest
    | CancelCollection
    | Ack
    | UploadResume
    | StorageUnavailable
)

_encoder = msgspec.msgpack.Encoder()
_agent_decoder = msgspec.msgpack.Decoder(AgentMessage)
_server_decoder = msgspec.msgpack.Decoder(ServerMessage)


class ProtocolError(Exception):
    """A frame that is not a valid message; the connection that sent it is closed."""


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def _decode(decoder: msgspec.msgpack.Decoder[Any], frame: bytes | str) -> Any:
    if isinstance(frame, str):
        raise ProtocolError("text frames are not part of the protocol")
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a {len(frame)} byte message is over the {MAX_MESSAGE_BYTES} limit")
    try:
        return decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed message: {exc}") from None


def decode_from_agent(frame: bytes | str) -> AgentMessage:
    message: AgentMessage = _decode(_agent_decoder, frame)
    return message


def decode_from_server(frame: bytes | str) -> ServerMessage:
    message: ServerMessage = _decode(_server_decoder, frame)
    return message
