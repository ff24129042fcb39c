"""KubeRay's RayJob schema, vendored compactly so the deploy test runs everywhere.

``tests/data/kuberay/rayjob-v1-schema.json.gz`` is the ``v1`` ``openAPIV3Schema`` of KubeRay's
RayJob CRD (``ray-operator/config/crd/bases/ray.io_rayjobs.yaml``, Apache-2.0, see the
``LICENSE`` and ``NOTICE`` beside it) with every ``description`` removed: 13 kB instead of
the CRD's 1.4 MB, the same validation. Regenerate it from another operator version with
``python -m tests.kuberay_schema path/to/ray.io_rayjobs.yaml``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import yaml

VENDORED = Path(__file__).with_name("data") / "kuberay" / "rayjob-v1-schema.json.gz"


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def schema_from_crd(crd_path: Path) -> dict:
    """The ``v1`` RayJob schema of a KubeRay CRD file, descriptions removed."""
    crd = yaml.safe_load(Path(crd_path).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return _without_descriptions(version["schema"]["openAPIV3Schema"])


def vendored_schema() -> dict:
    return json.loads(gzip.decompress(VENDORED.read_bytes()))


def main(crd_path: str) -> None:
    text = json.dumps(schema_from_crd(Path(crd_path)), sort_keys=True, separators=(",", ":"))
    staged = VENDORED.with_suffix(".tmp")
    staged.write_bytes(gzip.compress(text.encode(), mtime=0))
    staged.replace(VENDORED)  # atomic: never a half-written schema
    print(f"wrote {VENDORED} ({VENDORED.stat().st_size} bytes) from {crd_path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
