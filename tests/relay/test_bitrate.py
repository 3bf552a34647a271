"""Tests for streamgate.relay.bitrate: the sliding-window bitrate meter."""

from __future__ import annotations

import pytest

from streamgate.relay.bitrate import BitrateMeter


def test_bitrate_meter_constant_rate() -> None:
    meter = BitrateMeter(window=5.0)
    for second in range(10):
        meter.add(62_500, second + 0.25)
        meter.add(62_500, second + 0.75)
    assert meter.bitrate(10.0) == pytest.approx(1_000_000)


def test_bitrate_meter_empty_and_ramp_up() -> None:
    meter = BitrateMeter()
    assert meter.bitrate(123.0) == 0.0
    meter.add(1000, 100.0)
    # One second in, the average is over that second, not the whole window.
    assert meter.bitrate(100.5) == pytest.approx(8000)
    meter.add(1000, 101.2)
    assert meter.bitrate(102.0) == pytest.approx(16000 / 2)


def test_bitrate_meter_decays_to_zero() -> None:
    meter = BitrateMeter(window=3.0)
    meter.add(10_000, 50.5)
    assert meter.bitrate(51.0) > 0
    assert meter.bitrate(53.5) == pytest.approx(80_000 * 0.5 / 3)  # half of second 50 left
    assert meter.bitrate(54.0) == 0.0
    assert meter.bitrate(500.0) == 0.0


def test_bitrate_meter_prorates_the_oldest_second() -> None:
    meter = BitrateMeter(window=2.0)
    meter.add(1000, 0.0)
    meter.add(1000, 10.5)
    # The window is (10.25, 12.25]: three quarters of second 10 is inside.
    assert meter.bitrate(12.25) == pytest.approx(750 * 8 / 2)


def test_bitrate_meter_memory_is_bounded() -> None:
    meter = BitrateMeter(window=5.0)
    for tick in range(10_000):
        meter.add(100, tick * 0.37)
    assert len(meter._bytes) == len(meter._seconds) == 6
    assert meter.bitrate(3700.0) == pytest.approx(100 * 8 / 0.37, rel=0.1)


def test_bitrate_meter_ignores_bad_samples() -> None:
    meter = BitrateMeter(window=2.0)
    meter.add(1000, 100.0)
    meter.add(-5, 100.5)
    meter.add(0, 100.5)
    meter.add(1000, float("nan"))
    meter.add(1000, 10.0)  # far in the past: outside any window
    assert meter.bitrate(101.0) == pytest.approx(8000)
    assert meter.bitrate(float("inf")) == 0.0


@pytest.mark.parametrize("window", [0.0, -1.0, float("nan"), float("inf")])
def test_bitrate_meter_rejects_bad_window(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        BitrateMeter(window=window)


def test_bitrate_meter_fractional_window() -> None:
    meter = BitrateMeter(window=0.5)
    meter.add(500, 10.1)
    meter.add(500, 10.4)
    assert meter.bitrate(10.5) == pytest.approx(1000 * 8 / 0.5)
