"""The people a benchmark seeds: subjects (the leavers) and bystanders (who must stay untouched).

Every system holds every person, matched by userName, so the request count per case is exact."""

from __future__ import annotations

from lethe.devstack import Person


def subject(number: int) -> Person:
    tag = f"{number:05d}"
    return Person(f"leaver-{tag}@corp.example", f"leaver-{tag}@corp.example", f"Leaver{tag}", "Bench", f"L{tag}")


def bystander(number: int) -> Person:
    tag = f"{number:05d}"
    return Person(f"staff-{tag}@corp.example", f"staff-{tag}@corp.example", f"Staff{tag}", "Bench", f"S{tag}")


def subjects(count: int, first: int = 0) -> list[Person]:
    return [subject(n) for n in range(first, first + count)]


def bystanders(count: int) -> list[Person]:
    return [bystander(n) for n in range(count)]
