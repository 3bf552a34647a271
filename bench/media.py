"""Pre-encoded FLV sources for the benchmarks, and what their bitrate really is.

Each source is generated once with libx264/AAC at a constant bitrate
(``nal-hrd=cbr`` with a VBV buffer of 0.2 s, so any window of a few
seconds carries very nearly bitrate x length) and cached. The publisher
then sends it with ``ffmpeg -re -stream_loop -1 -c copy``: almost free.

:func:`analyse` reads the FLV tags back and gives the payload bitrate and
the *lowest* bitrate over any window of a given length: a player that got
everything in a window got at least that much, so "received >= 99 % of the
source" is judged against it and a VBV swing is never mistaken for a loss.
"""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.peers import need

__all__ = ["Source", "analyse", "ensure_source", "publisher_argv"]

_TAG = struct.Struct(">B3s3sB3s")


@dataclass(frozen=True)
class Source:
    """One cached FLV file and its measured rates (bits per second)."""

    path: str
    kbps: int  # nominal total (video + audio)
    size: str
    fps: int
    gop_s: float
    seconds: float  # media duration of one loop
    payload_bps: float  # audio+video tag bytes over the loop, x8 / seconds
    min_window_bps: dict[str, float]  # window seconds -> lowest rate over any such window
    tags: int

    def min_bps(self, window: float) -> float:
        """The lowest payload rate over any window of ``window`` seconds (interpolated)."""
        keys = sorted(float(k) for k in self.min_window_bps)
        best = keys[0]
        for k in keys:
            if k <= window:
                best = k
        return self.min_window_bps[f"{best:g}"]


def _encode(path: Path, kbps: int, size: str, fps: int, gop_s: float, seconds: float) -> None:
    audio = 128 if kbps >= 1500 else 64
    video = kbps - audio
    tmp = path.with_suffix(".tmp.flv")
    argv = [
        need("ffmpeg"),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        f"{seconds:g}",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(int(fps * gop_s)),
        "-keyint_min",
        str(int(fps * gop_s)),
        "-sc_threshold",
        "0",
        "-b:v",
        f"{video}k",
        "-minrate",
        f"{video}k",
        "-maxrate",
        f"{video}k",
        "-bufsize",
        f"{max(video // 5, 32)}k",
        "-x264-params",
        "nal-hrd=cbr:force-cfr=1",
        "-c:a",
        "aac",
        "-b:a",
        f"{audio}k",
        "-ac",
        "2",
        "-f",
        "flv",
        str(tmp),
    ]
    subprocess.run(argv, check=True, timeout=300, stdin=subprocess.DEVNULL)
    tmp.replace(path)


def _tags(path: Path) -> list[tuple[int, int, int]]:
    """(type, timestamp ms, payload size) of every audio and video tag."""
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path}: not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4
    out = []
    while pos + 11 <= len(data):
        kind, size3, ts3, ts_ext, _ = _TAG.unpack_from(data, pos)
        size = int.from_bytes(size3, "big")
        ts = int.from_bytes(ts3, "big") | (ts_ext << 24)
        if kind in (8, 9):
            out.append((kind, ts, size))
        pos += 11 + size + 4
    return out


def analyse(path: Path, windows: tuple[float, ...] = (3, 5, 10, 20)) -> dict[str, object]:
    tags = _tags(path)
    if not tags:
        raise ValueError(f"{path}: no media tags")
    video = [t for t in tags if t[0] == 9]
    frame = (video[-1][1] - video[0][1]) / max(1, len(video) - 1) if len(video) > 1 else 40
    seconds = (max(t[1] for t in tags) - min(t[1] for t in tags) + frame) / 1000.0
    total = sum(t[2] for t in tags)
    # Loop the file (as -stream_loop does) so windows may wrap around its end.
    loop_ms = seconds * 1000.0
    points = sorted((ts, size) for _, ts, size in tags)
    looped = points + [(ts + loop_ms, size) for ts, size in points]
    mins: dict[str, float] = {}
    for w in windows:
        if w >= seconds:
            mins[f"{w:g}"] = total * 8 / seconds
            continue
        span = w * 1000.0
        best = float("inf")
        acc = 0
        j = 0
        for i in range(len(points)):
            while j < len(looped) and looped[j][0] < looped[i][0] + span:
                acc += looped[j][1]
                j += 1
            best = min(best, acc * 8 / w)
            acc -= looped[i][1]
        mins[f"{w:g}"] = best
    return {
        "seconds": seconds,
        "payload_bps": total * 8 / seconds,
        "min_window_bps": mins,
        "tags": len(tags),
    }


def ensure_source(
    cache: Path, kbps: int, *, size: str, fps: int = 25, gop_s: float = 2.0, seconds: float = 20
) -> Source:
    """The cached source for these settings, generated on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"src-{kbps}k-{size}-{fps}fps-gop{gop_s:g}-{seconds:g}s"
    path = cache / f"{stem}.flv"
    meta = cache / f"{stem}.json"
    if path.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        return Source(**info)
    if not path.is_file():
        _encode(path, kbps, size, fps, gop_s, seconds)
    facts = analyse(path)
    source = Source(path=str(path), kbps=kbps, size=size, fps=fps, gop_s=gop_s, **facts)  # type: ignore[arg-type]
    meta.write_text(json.dumps(asdict(source), indent=1))
    return source


def publisher_argv(source: Source, urls: list[str]) -> list[str]:
    """ffmpeg looping the file in real time to one URL, or to many through the tee muxer."""
    argv = [
        need("ffmpeg"),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        source.path,
        "-map",
        "0",
        "-c",
        "copy",
    ]
    if len(urls) == 1:
        return [*argv, "-f", "flv", urls[0]]
    outs = "|".join(f"[f=flv:onfail=ignore]{u}" for u in urls)
    return [*argv, "-f", "tee", outs]
