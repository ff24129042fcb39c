"""Seeded splits by identity, so no person appears in two splits."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence


def identity_groups(videos: Iterable[Sequence[str]]) -> list[list[str]]:
    """Connected components of identities that share a video (a fake links target and source)."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for ids in videos:
        roots = [find(i) for i in ids]
        for root in roots[1:]:
            parent[find(root)] = find(roots[0])
    groups: dict[str, list[str]] = {}
    for identity in sorted(parent):
        groups.setdefault(find(identity), []).append(identity)
    return sorted(groups.values())


def split_identities(
    videos: Iterable[Sequence[str]], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """identity -> split, filling the splits in order to their share of identities.

    Groups (see ``identity_groups``) move whole; the order is a seeded shuffle of sorted groups,
    so the result depends on the seed and the set of identities only.
    """
    groups = identity_groups(videos)
    random.Random(seed).shuffle(groups)
    total = sum(len(g) for g in groups)
    names = list(fractions)
    assignment, filled, current = {}, 0, 0
    for group in groups:
        # Move on once this split holds its share (the last split takes the rest).
        while current < len(names) - 1 and filled >= round(
            total * sum(fractions[n] for n in names[: current + 1])
        ):
            current += 1
        for identity in group:
            assignment[identity] = names[current]
        filled += len(group)
    return assignment


def split_by_video_count(
    keys: Sequence[str], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """key -> split, one key per video, filling the splits to their share of *videos*.

    For datasets where one link graph joins everybody (Celeb-DF swaps every celebrity with
    many others), groups cannot move whole; the caller splits by one identity per video (the
    target) and drops what crosses. Keys move whole in a seeded shuffle of the sorted keys.
    """
    counts = Counter(keys)
    order = sorted(counts)
    random.Random(seed).shuffle(order)
    names = list(fractions)
    bounds = [
        round(len(keys) * sum(fractions[n] for n in names[: i + 1])) for i in range(len(names))
    ]
    assignment, filled, current = {}, 0, 0
    for key in order:
        while current < len(names) - 1 and filled >= bounds[current]:
            current += 1
        assignment[key] = names[current]
        filled += counts[key]
    return assignment
