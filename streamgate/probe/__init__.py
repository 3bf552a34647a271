"""``streamgate probe``: check an RTMP(S) origin or stream step by step.

``streamgate probe rtmp[s]://host[:port]/app/stream`` resolves the host,
connects, verifies TLS (rtmps), does the RTMP handshake, ``connect`` and
``play``, then waits for the first media, the first keyframe and the codecs'
sequence headers. Each step is timed and has its own timeout; the run ends
with one diagnosis line and exits 0 only if media arrived.

The runner is :mod:`streamgate.probe.steps`; the steps (one ``step_<name>``
function each) are in :mod:`streamgate.probe.network` (DNS, TCP, TLS) and
:mod:`streamgate.probe.rtmp_steps` (over the one asyncio client, via
:mod:`streamgate.probe.session`), the report types in
:mod:`streamgate.probe.report`, the TLS explanations (shared with the
gateway) in :mod:`streamgate.tls.diagnosis`, the certificate reader in
:mod:`streamgate.tls.x509`, what media reveals in
:mod:`streamgate.probe.watch` and the command line in :mod:`streamgate.probe.cli`.
"""

from __future__ import annotations

from streamgate.probe.cli import add_arguments, main
from streamgate.probe.steps import (
    ProbeOptions,
    ProbeReport,
    ProbeTarget,
    StepResult,
    parse_target,
    run_probe,
)

__all__ = [
    "ProbeOptions",
    "ProbeReport",
    "ProbeTarget",
    "StepResult",
    "add_arguments",
    "main",
    "parse_target",
    "run_probe",
]
