"""Named entities for the `entity_swap` strategy: a small built-in list per kind, and the pool of a dataset.

An entity is a capitalised name listed under one kind (country, city, person, planet, month, weekday,
language, continent, river); names are matched case-sensitively on word boundaries, longest first, so
"New York" wins over "York" and "Isaac Newton" over "Newton". The lists are deliberately small and
unambiguous (no "May", no "Amazon" the company, no "Georgia"); extend them per dataset with
`EntityPool(extra={"compound": ["Benzene", "Toluene"]})` or `prefgate pairs construct --entities FILE.json`.

`EntityPool.from_texts(texts)` records which entities of each kind the dataset itself mentions: a swap
prefers one of those (a plausible distractor from the same domain) and falls back to the built-in list.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BUILTIN_ENTITIES: dict[str, tuple[str, ...]] = {
    "country": (
        "Argentina", "Australia", "Brazil", "Canada", "Chile", "China", "Egypt", "France", "Germany", "Greece",
        "India", "Ireland", "Italy", "Japan", "Kenya", "Mexico", "New Zealand", "Nigeria", "Norway", "Peru",
        "Poland", "Portugal", "Russia", "South Africa", "Spain", "Sweden", "Turkey", "United Kingdom",
        "United States",
    ),
    "city": (
        "Athens", "Beijing", "Berlin", "Buenos Aires", "Cairo", "Canberra", "Chicago", "Dublin", "Istanbul",
        "Lima", "Lisbon", "London", "Madrid", "Mexico City", "Moscow", "Mumbai", "Nairobi", "New Delhi",
        "New York", "Oslo", "Ottawa", "Paris", "Rome", "Shanghai", "Stockholm", "Sydney", "Tokyo", "Toronto",
        "Vienna", "Warsaw",
    ),
    "person": (
        "Ada Lovelace", "Alan Turing", "Albert Einstein", "Aristotle", "Beethoven", "Charles Darwin", "Darwin",
        "Einstein", "Galileo", "Isaac Newton", "Leonardo da Vinci", "Marie Curie", "Mozart", "Napoleon", "Newton",
        "Nikola Tesla", "Picasso", "Plato", "Shakespeare", "Socrates", "Thomas Edison", "William Shakespeare",
    ),
    "planet": ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"),
    "month": ("January", "February", "March", "April", "June", "July", "August", "September", "October",
              "November", "December"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "language": ("Arabic", "Chinese", "English", "French", "German", "Hindi", "Italian", "Japanese", "Portuguese",
                 "Russian", "Spanish"),
    "continent": ("Africa", "Antarctica", "Asia", "Europe", "North America", "Oceania", "South America"),
    "river": ("Amazon", "Danube", "Ganges", "Mississippi", "Nile", "Rhine", "Thames", "Yangtze"),
}


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    kind: str
    offset: int  # first occurrence in the text searched


class EntityPool:
    """Known entities by kind, and the ones a dataset mentions (see the module docstring)."""

    def __init__(self, extra: Mapping[str, Iterable[str]] | None = None, seen: Iterable[str] = ()):
        self.kinds: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in BUILTIN_ENTITIES.items()}
        for kind, names in (extra or {}).items():
            self.kinds[kind] = tuple(dict.fromkeys([*self.kinds.get(kind, ()), *names]))
        self.kind_of: dict[str, str] = {}
        for kind, names in self.kinds.items():
            for name in names:
                self.kind_of.setdefault(name, kind)  # the first kind listing a name keeps it
        names = sorted(self.kind_of, key=lambda n: (-len(n), n))
        self._pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b") if names else None
        self.seen: dict[str, tuple[str, ...]] = {}
        self.add_seen(seen)

    @classmethod
    def from_texts(cls, texts: Iterable[str], extra: Mapping[str, Iterable[str]] | None = None) -> EntityPool:
        pool = cls(extra)
        pool.add_seen(e.name for text in texts for e in pool.find(text))
        return pool

    def add_seen(self, names: Iterable[str]) -> None:
        by_kind: dict[str, set[str]] = {k: set(v) for k, v in self.seen.items()}
        for name in names:
            if name in self.kind_of:
                by_kind.setdefault(self.kind_of[name], set()).add(name)
        self.seen = {k: tuple(sorted(v)) for k, v in sorted(by_kind.items())}

    def find(self, text: str) -> list[Entity]:
        """The distinct known entities of `text`, in order of first occurrence."""
        if self._pattern is None:
            return []
        found: dict[str, Entity] = {}
        for m in self._pattern.finditer(text):
            found.setdefault(m.group(0), Entity(m.group(0), self.kind_of[m.group(0)], m.start()))
        return list(found.values())

    def replacement(self, kind: str, exclude: set[str], rng: random.Random) -> tuple[str | None, str | None]:
        """(another entity of `kind` not in `exclude`, "dataset" or "builtin"), or (None, None)."""
        for source, names in (("dataset", self.seen.get(kind, ())), ("builtin", self.kinds.get(kind, ()))):
            options = [n for n in names if n not in exclude and not _overlaps(n, exclude)]
            if options:
                return rng.choice(options), source
        return None, None


def _overlaps(name: str, exclude: set[str]) -> bool:
    """"Newton" and "Isaac Newton" name the same thing: never swap one for the other."""
    return any(name in other or other in name for other in exclude)
