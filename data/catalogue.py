"""The section 五 catalogue: items, scales and dimensions, loaded once from ``catalogue.yml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yml")
RISKS = ("none", "concern", "urgent")


@dataclass(frozen=True)
class ScaleValue:
    value: str
    label: str
    risk: str
    detail: str | None = None  # name of the extra field this value asks for (count, illness_name)


@dataclass(frozen=True)
class Item:
    key: str
    label: str
    dimension: str
    scale: str
    question: str
    values: tuple[ScaleValue, ...]
    remote: bool = True  # asked on a remote check-in (phone, chat); false: judged on site by the visitor

    def value(self, value: str) -> ScaleValue:
        for v in self.values:
            if v.value == value or v.label == value:
                return v
        allowed = "/".join(f"{v.value}({v.label})" for v in self.values)
        raise ValueError(f"{self.key}: '{value}' is not on the scale {self.scale}: {allowed}")


@dataclass(frozen=True)
class Catalogue:
    dimensions: dict[str, str]           # key -> Chinese label
    scales: dict[str, tuple[ScaleValue, ...]]
    items: tuple[Item, ...]

    def item(self, key: str) -> Item:
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(f"unknown section 五 item: {key}")

    def items_of(self, dimension: str) -> list[Item]:
        return [i for i in self.items if i.dimension == dimension]

    @property
    def keys(self) -> list[str]:
        return [i.key for i in self.items]

    @property
    def remote_keys(self) -> list[str]:
        """The items a remote check-in asks: its record is complete when these are answered."""
        return [i.key for i in self.items if i.remote]


@lru_cache(maxsize=1)
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    scales = {
        name: tuple(ScaleValue(**v) for v in values) for name, values in raw["scales"].items()
    }
    for values in scales.values():
        for v in values:
            if v.risk not in RISKS:
                raise ValueError(f"catalogue: risk {v.risk!r} of {v.value} is not one of {RISKS}")
    dimensions = {k: v["label"] for k, v in raw["dimensions"].items()}
    items = []
    for entry in raw["items"]:
        if entry["dimension"] not in dimensions:
            raise ValueError(f"catalogue: item {entry['key']} has unknown dimension")
        items.append(Item(**entry, values=scales[entry["scale"]]))
    return Catalogue(dimensions=dimensions, scales=scales, items=tuple(items))
