"""Print what a requirement installs besides torch: the size of its dependency closure in this
environment (importlib.metadata's file lists), without torch and what torch itself pulls in.

    python .ci/install_size.py "lever-transfer"                    # the core install
    python .ci/install_size.py "lever-transfer[dmc,atari,plots]"   # what 'lever-transfer' was
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(requirement: str) -> set[str]:
    """Canonical names of the distributions ``requirement`` needs, itself included."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [Requirement(requirement)]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not for this platform or Python
        names.add(key[0])
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": extra})
                                         for extra in (req.extras or {""})):
                todo.append(dep)
    return names


def size_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            path = file.locate()
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20


if __name__ == "__main__":
    requirement = sys.argv[1]
    names = closure(requirement) - closure("torch")
    print(f"{requirement}: {size_mb(names):,.0f} MB besides torch ({len(names)} distributions)")
