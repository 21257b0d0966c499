"""Partitions and instance types: load the TOML file, resolve a studio's label and type, and
fill in or check its required resources against the type's ceiling. Owns no storage."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from studios.errors import Invalid

BUILTIN = Path(__file__).with_name("partitions.toml")


@dataclasses.dataclass(frozen=True)
class InstanceType:
    name: str
    cpu: int
    memory: int
    disk: float


@dataclasses.dataclass(frozen=True)
class Partition:
    label: str
    runtime: str
    default_instance_type: str
    instance_types: dict[str, InstanceType]


@dataclasses.dataclass(frozen=True)
class Resources:
    instance_type: str
    memory: int
    cpu: int
    disk_space: float


class Partitions:
    def __init__(self, partitions: dict[str, Partition], default: str) -> None:
        if default not in partitions:
            raise ValueError(f"default partition {default!r} is not declared")
        self.by_label = partitions
        self.default = default

    @classmethod
    def load(cls, path: Path | None = None) -> Partitions:
        data = tomllib.loads((path or BUILTIN).read_text())
        parts: dict[str, Partition] = {}
        for label, spec in data.get("partitions", {}).items():
            types = {
                name: InstanceType(name, int(t["cpu"]), int(t["memory"]), float(t["disk"]))
                for name, t in spec.get("instance_types", {}).items()
            }
            if not types:
                raise ValueError(f"partition {label!r} declares no instance types")
            default_type = spec.get("default_instance_type") or next(iter(types))
            if default_type not in types:
                raise ValueError(f"partition {label!r}: default_instance_type {default_type!r} is not one of its types")
            parts[label] = Partition(label, spec.get("runtime", "default"), default_type, types)
        return cls(parts, data.get("default_partition") or next(iter(parts)))

    def partition(self, label: str | None) -> Partition:
        if label is None:
            return self.by_label[self.default]
        try:
            return self.by_label[label]
        except KeyError:
            known = ", ".join(sorted(self.by_label))
            raise Invalid(f"partitionLabel {label!r} is not a partition of this service (known: {known})") from None

    def resolve(self, label: str | None, instance_type: str | None, memory: int | None, cpu: int | None, disk: float | None) -> Resources:
        """The effective type and resources, or `Invalid` naming the field and the ceiling."""
        part = self.partition(label)
        name = instance_type or part.default_instance_type
        itype = part.instance_types.get(name)
        if itype is None:
            known = ", ".join(part.instance_types)
            raise Invalid(f"instanceType {name!r} is not offered by partition {part.label!r} (choose one of: {known})")
        checks = (("memory", memory, itype.memory, "MB"), ("cpu", cpu, itype.cpu, "millicores"), ("diskSpace", disk, itype.disk, "GB"))
        for field, asked, ceiling, unit in checks:
            if asked is not None and asked > ceiling:
                raise Invalid(f"requiredResources.{field} {asked:g} {unit} exceeds the ceiling of instance type {name!r} ({ceiling:g} {unit})")
        return Resources(
            name,
            memory if memory is not None else itype.memory,
            cpu if cpu is not None else itype.cpu,
            disk if disk is not None else itype.disk,
        )
