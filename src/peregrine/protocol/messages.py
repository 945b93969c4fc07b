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

Every field an agent sends is bounded by its type, so msgspec refuses an oversized or
out-of-range message while decoding it, before building what it holds: at most
``MAX_ROWS_PER_MESSAGE`` rows of at most ``MAX_COLUMNS`` values each, counts that fit a signed
64-bit column, finite non-negative times, short ids.
Whatever a frame holds, decoding it returns a message or raises ``ProtocolError``, nothing else
(tests/protocol/test_decode_fuzz.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

PROTOCOL_VERSION = 1

#: The largest frame either side accepts; larger ones close the connection.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Upload chunks are this size at most, so a chunk always fits in a frame.
UPLOAD_CHUNK_BYTES = 1024 * 1024
#: Rows one result message may hold (agents send at most ``batch_rows``, 1000 by default).
MAX_ROWS_PER_MESSAGE = 10_000
#: Columns of a result (SQLite's own limit, ``SQLITE_MAX_COLUMN``).
MAX_COLUMNS = 2000
#: Entries of one log message, hunts named in a Hello.
MAX_LOG_ENTRIES = 10_000
MAX_SEEN_HUNTS = 1000
#: The largest value a signed 64-bit integer column (SQLite, PostgreSQL BIGINT) holds.
MAX_INT64 = 2**63 - 1

#: Sequence numbers, offsets, sizes and counts: never negative, never beyond the datastore.
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
#: Time stamps (seconds since the epoch) and durations: finite (no NaN) and not negative.
Seconds = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
#: Flow, upload, client and hunt ids.
Id = Annotated[str, msgspec.Meta(max_length=128)]
#: Artifact, source, column and status names, versions.
Name = Annotated[str, msgspec.Meta(max_length=1024)]
#: One value of a result row: what SQLite returns. msgspec cannot type "str or bytes" in one
#: union, so a value is any msgpack object: its cost is bounded by the frame's size (and its
#: nesting by msgspec's recursion limit, a ProtocolError).
Row = Annotated[list[Any], msgspec.Meta(max_length=MAX_COLUMNS)]
#: One log entry: a few named scalars ({"time": float, "level": str, "message": str}).
LogEntry = Annotated[dict[Name, bool | int | float | str | None], msgspec.Meta(max_length=64)]


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
    client_id: Id
    public_key: Annotated[bytes, msgspec.Meta(max_length=64)]
    #: Ed25519 signature over ``nonce + client_id`` (proves possession of the key).
    signature: Annotated[bytes, msgspec.Meta(max_length=128)]
    agent_version: Name
    protocol: int = PROTOCOL_VERSION
    #: Only needed the first time (enrollment); checked against the deployment's secret.
    enrollment_secret: Name | None = None
    #: Hunts this client has already been scheduled for (the server skips them).
    seen_hunts: Annotated[list[Id], msgspec.Meta(max_length=MAX_SEEN_HUNTS)] = []


class Welcome(Message, tag="welcome"):
    client_id: str
    server_time: float
    enrolled: bool = False
    #: The server takes ``FlowBatch`` frames (an older one does not: its agents send each
    #: flow message in a frame of its own).
    flow_batches: bool = False


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
    batch_rows: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROWS_PER_MESSAGE)] = 1000
    batch_seconds: float = 1.0
    #: The hunt this collection belongs to; the agent remembers it and names it in its Hello.
    hunt_id: str | None = None


class CancelCollection(Message, tag="cancel"):
    flow_id: str
    reason: str = "cancelled"


class Ack(Message, tag="ack"):
    """The server has durably stored everything of ``flow_id`` up to ``seq``."""

    flow_id: str
    seq: Count


class UploadResume(Message, tag="upload_resume"):
    """How much of an upload the server already has; the agent continues from ``offset``.

    ``refused`` says why the server will not take the upload at all (over a size limit); the
    offset is then the announced size, so an agent that does not know the field stops too."""

    flow_id: str
    upload_id: str
    offset: Count
    refused: str | None = None


class EventAssignments(Message, tag="event_assignments"):
    """The event artifacts this client runs from now on (all of them: one missing is stopped).

    ``version`` names the server's assignment set; the agent restarts only the artifacts whose
    call (name, parameters) or definition changed."""

    version: int
    artifacts: list[ArtifactCall]
    definitions: list[dict[str, Any]]
    permissions: list[str] = []
    #: Rows per batch and seconds between batches (whichever comes first).
    batch_rows: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROWS_PER_MESSAGE)] = 1000
    batch_seconds: float = 1.0
    #: What each event query's worker may use: percent of one core, MB of memory.
    cpu_limit: float | None = None
    max_memory_mb: int | None = None


class StorageUnavailable(Message, tag="storage_unavailable"):
    """The server cannot store results now (disk full): keep them spooled and retry later."""

    retry_after: float


# -- agent → server: the per-flow ordered stream ----------------------------------------------


class FlowMessage(Message):
    flow_id: Id
    seq: Count


class FlowStarted(FlowMessage, tag="flow_started"):
    started: Seconds


class ResultBatch(FlowMessage, tag="rows"):
    artifact: Name
    source: Name
    columns: Annotated[list[Name], msgspec.Meta(max_length=MAX_COLUMNS)]
    rows: Annotated[list[Row], msgspec.Meta(max_length=MAX_ROWS_PER_MESSAGE)]


class LogBatch(FlowMessage, tag="logs"):
    #: Each entry: {"time": float, "level": str, "message": str}.
    entries: Annotated[list[LogEntry], msgspec.Meta(max_length=MAX_LOG_ENTRIES)]


class SourceFinished(FlowMessage, tag="source_done"):
    artifact: Name
    source: Name
    status: Name  # finished, skipped, error
    rows: Count
    error: str | None = None
    elapsed: Seconds = 0.0
    #: Warnings of the source's query, those the agent did not log too.
    warnings: Count = 0
    #: Files upload() left out for the collection's upload limit.
    uploads_skipped: Count = 0


class UploadStart(FlowMessage, tag="upload_start"):
    upload_id: Id
    path: Annotated[str, msgspec.Meta(max_length=4096)]
    size: Count
    sha256: Annotated[str, msgspec.Meta(max_length=128)]


class UploadChunk(Message, tag="upload_chunk"):
    """Not part of the seq stream: chunks are resumable by offset instead."""

    flow_id: Id
    upload_id: Id
    offset: Count
    data: Annotated[bytes, msgspec.Meta(max_length=UPLOAD_CHUNK_BYTES)]
    last: bool = False


class FlowFinished(FlowMessage, tag="flow_done"):
    status: Name  # finished, error, cancelled
    error: str | None = None
    finished: Seconds = 0.0


#: Flow messages one ``FlowBatch`` may hold, and the bytes an agent packs into one at most.
MAX_BATCHED = 256
BATCH_BYTES = 256 * 1024

#: What a ``FlowBatch`` may carry: the spooled per-flow stream (upload chunks and event rows
#: go on their own).
BatchedMessage = FlowStarted | ResultBatch | LogBatch | SourceFinished | UploadStart | FlowFinished


class FlowBatch(Message, tag="flow_batch"):
    """Several spooled flow messages in one frame, in spool order: a small collection's start,
    rows, source status and end arrive as one frame, are stored as one run and acknowledged
    by one ``Ack``. Each message keeps its own ``seq``: the spool, the acknowledgements and
    the server's duplicate checks are exactly those of messages sent one per frame. Sent only
    to a server whose ``Welcome`` says ``flow_batches``."""

    messages: Annotated[list[BatchedMessage], msgspec.Meta(min_length=1, max_length=MAX_BATCHED)]


class _FlowBatchFrame(msgspec.Struct, tag="flow_batch", tag_field="kind"):
    """``FlowBatch`` built from messages already encoded (the spool keeps them so)."""

    messages: list[msgspec.Raw]


def pack_flow_messages(payloads: list[bytes]) -> list[bytes]:
    """Frames for encoded flow messages: consecutive ones packed into ``FlowBatch`` frames of at
    most ``MAX_BATCHED`` messages and ``BATCH_BYTES`` (a larger message goes alone, as does
    one with nothing to pack it with)."""
    frames: list[bytes] = []
    group: list[bytes] = []
    size = 0

    def flush() -> None:
        if len(group) == 1:
            frames.append(group[0])
        elif group:
            frames.append(_encoder.encode(_FlowBatchFrame([msgspec.Raw(p) for p in group])))
        group.clear()

    for payload in payloads:
        if group and (size + len(payload) > BATCH_BYTES or len(group) >= MAX_BATCHED):
            flush()
            size = 0
        group.append(payload)
        size += len(payload)
    flush()
    return frames


# -- agent → server: events ------------------------------------------------------------------


#: The spool key (``stream``) of an event artifact's rows is this plus the artifact's name.
EVENT_STREAM_PREFIX = "events:"


class EventRows(Message, tag="event_rows"):
    """Rows of an event artifact's source. ``stream`` is the agent's spool key of the artifact
    (``events:<artifact>``); ``seq`` numbers the first row in the client's stream of that
    artifact (row ``i`` is ``seq + i``), so batches of one stream never share a number. The
    server stores a batch once (by ``seq``) and acknowledges it with ``Ack(stream, seq)``;
    ``time`` (when the agent cut the batch) chooses the day the rows are filed under."""

    stream: Id
    seq: Count
    artifact: Name
    source: Name
    time: Seconds
    columns: Annotated[list[Name], msgspec.Meta(max_length=MAX_COLUMNS)]
    rows: Annotated[list[Row], msgspec.Meta(max_length=MAX_ROWS_PER_MESSAGE)]


class EventStatus(Message, tag="event_status"):
    """How an event artifact runs on the agent: ``running``, ``restarting`` (its worker died
    or went over its limits; restarted after a backoff), ``failed`` (it cannot start: a bad
    definition) or ``stopped`` (unassigned). Not spooled: the latest is sent at each
    connection and whenever it changes."""

    artifact: Name
    state: Name
    restarts: Count = 0
    error: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    time: Seconds = 0.0


AgentMessage = (
    Hello
    | FlowBatch
    | FlowStarted
    | ResultBatch
    | LogBatch
    | SourceFinished
    | UploadStart
    | UploadChunk
    | FlowFinished
    | EventRows
    | EventStatus
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
    | EventAssignments
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
    except msgspec.DecodeError as exc:  # also ValidationError: a type or a bound refused
        raise ProtocolError(f"malformed message: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"malformed message: a string is not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ProtocolError("malformed message: nested too deeply") from None


def decode_from_agent(frame: bytes | str) -> AgentMessage:
    message: AgentMessage = _decode(_agent_decoder, frame)
    return message


def decode_from_server(frame: bytes | str) -> ServerMessage:
    message: ServerMessage = _decode(_server_decoder, frame)
    return message
