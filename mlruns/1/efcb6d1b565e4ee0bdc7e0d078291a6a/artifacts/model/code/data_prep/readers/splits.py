"""Seeded splits by source identity, so no person appears in two splits."""

from __future__ import annotations

import random
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
