"""OTLP out, shared by traces and the metrics push: what ccotel sends, where, and how.

- ``settings``: where each signal goes and as whom (``target``, ``resource_attributes``);
- ``transport``: one request over HTTP/protobuf or gRPC, and what its answer means
  (``Sender``, ``ExportError`` and its kinds, ``Reply``);
- ``protowire``: the protobuf writer the encoders use;
- ``metrics``: Prometheus families as an OTLP metrics request (``encode_metrics``);
- ``backoff`` and ``health``: when to try again, and what /healthz and the log say.

Other packages import these names from here, not from the modules. Importing this
package loads no OpenTelemetry or gRPC module: opentelemetry-proto
is imported only to read a collector's non-empty answer, grpcio only for gRPC.
"""

from ccotel.otlp import protowire
from ccotel.otlp.backoff import Backoff
from ccotel.otlp.health import ExportHealth, hint, off
from ccotel.otlp.metrics import NATIVE_SCOPE, TEMPORALITIES, MetricsEncoder, encode_metrics
from ccotel.otlp.profile import PUSH_STATE, PushState, TeamProfile
from ccotel.otlp.settings import (
    Signal,
    Target,
    configured,
    display_url,
    push_identity,
    push_interval,
    push_temporality,
    resource_attributes,
    target,
)
from ccotel.otlp.transport import (
    MALFORMED,
    REFUSED,
    TOO_LARGE,
    TRANSIENT,
    ExportError,
    Reply,
    Sender,
)

__all__ = [
    "MALFORMED",
    "NATIVE_SCOPE",
    "PUSH_STATE",
    "REFUSED",
    "TEMPORALITIES",
    "TOO_LARGE",
    "TRANSIENT",
    "Backoff",
    "ExportError",
    "ExportHealth",
    "MetricsEncoder",
    "PushState",
    "Reply",
    "Sender",
    "Signal",
    "Target",
    "TeamProfile",
    "configured",
    "display_url",
    "encode_metrics",
    "hint",
    "off",
    "protowire",
    "push_identity",
    "push_interval",
    "push_temporality",
    "resource_attributes",
    "target",
]
