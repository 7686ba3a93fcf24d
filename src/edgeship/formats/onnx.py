"""ONNX proto helpers that every part may use."""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["SCOPE_KEY", "module_path"]

#: where torch's dynamo exporter records each node's module scopes
SCOPE_KEY = "pkg.torch.onnx.name_scopes"


def module_path(node: Any) -> str | None:
    """The source module path of an exported ONNX node ('features.3'), when the exporter recorded it."""
    for p in node.metadata_props:
        if p.key == SCOPE_KEY:
            try:
                parts = [s for s in ast.literal_eval(p.value) if s]
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None
            # cumulative scopes: ['', 'features', 'features.1', 'conv2d']: the deepest module, then the op
            return str(parts[-2]) if len(parts) >= 2 else None
    return None
