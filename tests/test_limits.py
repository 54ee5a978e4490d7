"""Limits from settings, and how they read to a person."""

from executions import limits
from executions.limits import KIB, MIB, Limits, human_bytes


def test_current_reads_settings(settings):
    settings.LIMITS = {**settings.LIMITS, "memory_mb": 256, "output_kb": 512, "wall_time_s": 2.5}
    current = limits.current()
    assert current.memory_bytes == 256 * MIB
    assert current.output_bytes == 512 * KIB
    assert current.wall_time_s == 2.5


def test_round_trip_through_a_dict_ignores_unknown_keys():
    original = Limits(memory_bytes=64 * MIB, processes=10)
    assert Limits.from_dict({**original.to_dict(), "surprise": 1}) == original
    assert Limits.from_dict(None) == Limits()


def test_human_bytes():
    assert human_bytes(128 * MIB) == "128 MiB"
    assert human_bytes(64 * KIB) == "64 KiB"
    assert human_bytes(1000) == "1000 bytes"


def test_describe_names_every_limit():
    names = dict(Limits().describe())
    assert names["Memory"] == "128 MiB"
    assert names["Network"] == "none"
