"""The submission rate: a sliding window over two counters, constant work per request."""

from executions.throttling import parse_rate, rate_wait


def test_rates_parse():
    assert parse_rate("30/min") == (30, 60)
    assert parse_rate("5/s") == (5, 1)
    assert parse_rate("100/hour") == (100, 3600)


def test_it_allows_the_rate_then_says_how_long_to_wait():
    start = 6000.0  # the start of a 60 s window
    assert [rate_wait("k", 3, 60, start + i) for i in range(3)] == [0, 0, 0]

    wait = rate_wait("k", 3, 60, start + 10)

    assert wait == 50  # this window is full: until it ends


def test_the_last_window_counts_as_much_as_it_still_overlaps():
    start = 6000.0
    for i in range(4):
        assert rate_wait("k", 4, 60, start + i) == 0
    # 15 s into the next window 3/4 of the last one still overlaps: 0 + 4 * 45/60 = 3 used.
    assert rate_wait("k", 4, 60, start + 75) == 0
    # 16 s in: 1 + 4 * 44/60 = 3.93, still under 4.
    assert rate_wait("k", 4, 60, start + 76) == 0
    # 17 s in: 2 + 4 * 43/60 = 4.87, over.
    assert rate_wait("k", 4, 60, start + 77) > 0


def test_a_window_later_the_slate_is_clean():
    for i in range(2):
        assert rate_wait("k", 2, 60, 6000.0 + i) == 0
    assert rate_wait("k", 2, 60, 6002.0) > 0
    assert rate_wait("k", 2, 60, 6000.0 + 121) == 0


def test_a_zero_rate_refuses_with_a_wait():
    assert rate_wait("k", 0, 60, 6030.0) == 30


def test_callers_are_counted_apart():
    assert rate_wait("alice", 1, 60, 6000.0) == 0
    assert rate_wait("bob", 1, 60, 6000.0) == 0
    assert rate_wait("alice", 1, 60, 6001.0) > 0
