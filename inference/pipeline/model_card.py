"""Saving trained weights with their model card: one layout for every model the pipeline trains.

The weights file holds ``{state_dict, config, name, version}`` (what the loaders read); the card sits beside it
as ``<weights>.json`` and ends with the file's identity (name, size, sha256), which inference checks before use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.pipeline.segment import file_sha256


def save_with_card(
    out: Path, net: Any, config: Mapping[str, Any], name: str, version: str, card: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``out`` (torch weights) and ``out.with_suffix('.json')``; returns the card as written.

    ``card`` holds the model-specific fields (task, architecture, data, training, metrics, intended use); they
    stand between the name/version and the weights' identity, in the order given.
    """
    import torch  # heavy: only when a model is saved

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "config": config, "name": name, "version": version}, out)
    return write_card(out, name, version, card)


def write_card(out: Path, name: str, version: str, card: Mapping[str, Any]) -> dict[str, Any]:
    """Write the model card ``out.with_suffix('.json')`` of an already written model file ``out`` (any format:
    torch weights, a YAML model); returns the card as written."""
    out = Path(out)
    written = {
        "name": name,
        "version": version,
        **card,
        "weights_file": out.name,
        "weights_bytes": out.stat().st_size,
        "sha256": file_sha256(out),
    }
    out.with_suffix(".json").write_text(json.dumps(written, indent=2) + "\n")
    return written
