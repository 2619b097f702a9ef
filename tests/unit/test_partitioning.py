"""liftline.partitioning: every process must agree on a key's partition, forever."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftline.partitioning import partition_for

# Computed once with CRC-32 and pinned: a change of hash (or of how keys are
# encoded) would move keys of existing clusters to other partitions.
PINNED = [
    ("a", 16, 3),
    ("user:1", 16, 2),
    ("user:42", 16, 6),
    ("order/2024/0001", 16, 10),
    ("é", 16, 14),
    ("🙂", 16, 9),
    ("k" * 512, 16, 6),
    ("a", 4096, 3651),
    ("user:1", 4096, 642),
    ("user:42", 4096, 3462),
    ("order/2024/0001", 4096, 778),
    ("é", 4096, 3390),
    ("🙂", 4096, 1321),
    ("a", 7, 4),
    ("user:42", 7, 4),
    ("🙂", 7, 3),
]


@pytest.mark.parametrize(("key", "partitions", "expected"), PINNED)
def test_known_keys_keep_their_partition(key: str, partitions: int, expected: int) -> None:
    assert partition_for(key, partitions) == expected


def test_partition_is_the_same_in_another_process_with_another_hash_seed() -> None:
    keys = ["a", "user:42", "é", "🙂"]
    code = (
        "from liftline.partitioning import partition_for\n"
        f"print([partition_for(k, 16) for k in {keys!r}])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == str([partition_for(k, 16) for k in keys])


@given(key=st.text(min_size=1, max_size=200), partitions=st.integers(min_value=1, max_value=4096))
def test_partition_is_in_range_and_repeatable(key: str, partitions: int) -> None:
    partition = partition_for(key, partitions)
    assert 0 <= partition < partitions
    assert partition_for(key, partitions) == partition


def test_one_partition_takes_every_key() -> None:
    assert {partition_for(f"k{i}", 1) for i in range(1000)} == {0}


def test_lone_surrogates_do_not_break_partitioning() -> None:
    assert 0 <= partition_for("bad\ud800key", 16) < 16


@pytest.mark.parametrize("template", ["user:{}", "{}", "order/2024/{:06d}", "é-{}-🙂"])
def test_100k_keys_spread_evenly_over_16_partitions(template: str) -> None:
    counts = Counter(partition_for(template.format(i), 16) for i in range(100_000))
    even = 100_000 / 16
    assert sorted(counts) == list(range(16))
    assert all(0.9 * even <= n <= 1.1 * even for n in counts.values()), counts


# -- hash tags: keys sharing a {tag} share a partition -----------------------------
@pytest.mark.parametrize(("key", "hashed"), [
    ("ski:{3.12}:2025:1:skier:812", "3.12"),
    ("{user:1}:cart", "user:1"),
    ("a{b}c{d}", "b"),        # the first tag only
    ("a{}b", "a{}b"),         # an empty tag does not count: the whole key
    ("a{b", "a{b"),           # no closing brace: the whole key
    ("a}b{c}", "c"),          # a '}' before the first '{' is ordinary
    ("plain", "plain"),
])
def test_hash_part(key: str, hashed: str) -> None:
    from liftline.partitioning import hash_part

    assert hash_part(key) == hashed


@given(st.text(min_size=1, max_size=40), st.text(max_size=20), st.text(max_size=20),
       st.integers(min_value=1, max_value=4096))
def test_keys_with_one_tag_share_a_partition(tag: str, before: str, after: str,
                                             partitions: int) -> None:
    tag = tag.replace("}", "")
    before = before.replace("{", "")
    if not tag:
        return
    key = f"{before}{{{tag}}}{after}"
    assert partition_for(key, partitions) == partition_for(tag, partitions)


def test_a_ride_of_the_ski_example_lands_in_one_partition() -> None:
    from examples.skiresort import day_key, seasons_key, skiers_key

    for resort, skier in ((1, 1), (3, 812), (10, 99_999)):
        keys = (day_key(resort, "2025", 5, skier), seasons_key(resort, skier),
                skiers_key(resort, "2025", 5, skier))
        assert len({partition_for(k, 16) for k in keys}) == 1
