"""The probe's steps, in the order they run, each with its own timeout.

``dns`` -> ``tcp`` -> ``tls`` (rtmps only) -> ``handshake`` -> ``connect`` ->
``play`` -> ``media`` -> ``keyframe`` -> ``codecs``. The network steps are in
:mod:`streamgate.probe.network`, the RTMP ones in
:mod:`streamgate.probe.rtmp_steps`, what they share in
:mod:`streamgate.probe.session` and the report types in
:mod:`streamgate.probe.report`. :func:`run_probe` runs the steps in order,
times them and stops at the first failure.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from streamgate.errors import ProtocolError
from streamgate.probe.network import explain_dns_error, step_dns, step_tcp, step_tls
from streamgate.probe.report import (
    Done,
    PeerClosed,
    ProbeOptions,
    ProbeReport,
    ProbeTarget,
    StepFailed,
    StepResult,
    parse_target,
)
from streamgate.probe.rtmp_steps import (
    step_codecs,
    step_connect,
    step_handshake,
    step_keyframe,
    step_media,
    step_play,
)
from streamgate.probe.session import ProbeRun

__all__ = [
    "STEP_NAMES",
    "Done",
    "ProbeOptions",
    "ProbeReport",
    "ProbeTarget",
    "StepFailed",
    "StepResult",
    "explain_dns_error",
    "parse_target",
    "run_probe",
]

# --------------------------------------------------------------------- the runner

Step = Callable[[ProbeRun], Awaitable[Done]]

_STEPS: Final[tuple[tuple[str, Step], ...]] = (
    ("dns", step_dns),
    ("tcp", step_tcp),
    ("tls", step_tls),
    ("handshake", step_handshake),
    ("connect", step_connect),
    ("play", step_play),
    ("media", step_media),
    ("keyframe", step_keyframe),
    ("codecs", step_codecs),
)
STEP_NAMES: Final = tuple(name for name, _step in _STEPS)


def _success_line(run: ProbeRun) -> str:
    watch = run.watch
    assert watch is not None
    line = f"media arrived: {watch.codecs()}"
    if watch.keyframe_arrived:
        ms = watch.ms_since_start(watch.first_keyframe_at)
        line += f"; first keyframe {ms} ms after Play.Start"
    if run.target.tls and run.options.insecure:
        line += " (WARNING: TLS certificate NOT verified, --insecure)"
    return line


async def run_probe(
    target: ProbeTarget,
    options: ProbeOptions | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> ProbeReport:
    """Run the steps in order; the report's ``ok`` is true only if media arrived."""
    options = options or ProbeOptions()
    run = ProbeRun(target, options)
    report = ProbeReport(str(target), insecure=target.tls and options.insecure)
    try:
        for name, step in _STEPS:
            if name == "tls" and not target.tls:
                continue
            started = time.perf_counter()
            try:
                done = await step(run)
            except StepFailed as failure:
                result = StepResult(name, False, _elapsed(started), failure.detail, failure.info)
                report.diagnosis = failure.diagnosis
            except ProtocolError as exc:
                detail = f"protocol error from the server during {name}: {exc.description}"
                result = StepResult(name, False, _elapsed(started), detail)
                report.diagnosis = detail
            except PeerClosed as exc:
                detail = f"the server closed the connection during {name} ({exc})"
                result = StepResult(name, False, _elapsed(started), detail)
                report.diagnosis = detail
            else:
                result = StepResult(name, True, _elapsed(started), done.detail, done.info)
            report.steps.append(result)
            if on_step is not None:
                on_step(result)
            if not result.ok:
                return report
        report.ok = True
        report.diagnosis = _success_line(run)
        return report
    finally:
        await run.close()


def _elapsed(started: float) -> float:
    return (time.perf_counter() - started) * 1000
