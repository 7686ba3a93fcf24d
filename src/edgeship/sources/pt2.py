"""torch.export programs (``.pt2``): every member vetted by what torch will do with it before
``torch.export.load`` reads the archive, then the program's module as a :class:`Source`."""

from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import sha256_file
from ..errors import EdgeshipError, FormatError, SecurityError, first_line
from ..readers import parse_json
from ..readers.archives import open_zip
from .model import Source, TorchModel
from .torch import make_examples, source_from_module

# members of a .pt2 that torch.export.load reads as text or JSON, never unpickles (after the
# archive's top folder); weights and constants stored raw are allowed by their config files
_PT2_TEXT = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")


def _check_pt2_pickles(path: Path, allow_pickle: bool) -> None:
    """torch.export.load unpickles parts of a .pt2 with ``weights_only=False`` (weights and
    constants its configs mark ``use_pickle``, the sample inputs, legacy state dicts, custom
    objects), and any pickle protocol runs code, protocol 0 included, whose first byte is neither
    ``\x80`` nor ``PK``. So every member is vetted by what torch will do with it, not by its
    first bytes: the text and JSON members and the raw tensors the configs name (``use_pickle``
    false) are read as bytes; every other member must load with torch's safe unpickler
    (``weights_only=True``), and custom objects are refused; unless ``allow_pickle``."""
    if allow_pickle:
        return
    import torch

    def refuse(member: str, why: str) -> SecurityError:
        return SecurityError(f"{path} member {member} {why}",
                             hint="load it only if you trust its author: add --allow-pickle")

    with open_zip(path, "torch.export program") as z:
        infos = {i.filename.split("/", 1)[1] if "/" in i.filename else i.filename: i for i in z.infolist()}
        raw: set[str] = set()
        pickled: set[str] = set()
        configs = {rel for rel in infos if rel.rpartition("/")[0] in ("data/weights", "data/constants")
                   and rel.endswith("_config.json")}
        tops = {i.filename.split("/", 1)[0] for i in z.infolist()}
        if len(tops) != 1:  # torch reads the members of one folder; the vetting must see those same ones
            raise FormatError(f"{path} holds {len(tops)} top folders, not one",
                              hint="save the program with torch.export.save")
        for rel in configs:
            folder = rel.rpartition("/")[0]
            try:
                doc = parse_json(z.read(infos[rel]).decode("utf-8"), f"{path} member {rel}")
                for e in (doc.get("config") or {}).values():
                    if not isinstance(e["path_name"], str):
                        raise TypeError("path_name is not text")
                    (pickled if e.get("use_pickle") else raw).add(f"{folder}/{e['path_name']}")
            except (ValueError, AttributeError, TypeError, KeyError, UnicodeDecodeError, FormatError, OSError,
                    EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError):
                raise FormatError(f"{path} member {rel} is not a valid payload config",
                                  hint="save the program with torch.export.save") from None
        for rel, info in infos.items():
            name = rel.rpartition("/")[2]
            # torch unpickles custom and opaque objects whatever their config says: checked first
            if name.startswith(("custom_obj", "opaque_obj")) or "custom_obj" in rel or "opaque_obj" in rel:
                raise refuse(rel, "holds a pickled custom object, which runs code when loaded")
            text = (rel in _PT2_TEXT or rel in configs or rel.startswith("extra/")
                    or (rel.startswith("models/") and rel.endswith(".json")))
            if info.is_dir() or (rel not in pickled and (rel in raw or text)):
                continue
            try:
                member = z.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as e:
                raise FormatError(f"{path} member {rel} cannot be read: {type(e).__name__}: {str(e)[:200]}",
                                  hint="the archive is damaged; save the program again") from None
            try:
                torch.load(io.BytesIO(member), weights_only=True, map_location="cpu")
            except pickle.UnpicklingError as e:
                if "weights only" in str(e).lower() or "weights_only" in str(e):
                    raise refuse(rel, "is a pickle (or data torch would unpickle) that can run code when loaded") from None
                raise refuse(rel, f"is not a pickle torch's safe loader reads ({first_line(e, 160)})") from None
            except Exception as e:  # noqa: BLE001 - torch's reader on a damaged member: any error, all refused
                raise FormatError(f"{path} member {rel} is damaged: {type(e).__name__}: {first_line(e, 200)}",
                                  hint="save the program again with torch.export.save") from None


def pt2_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges=None, values=None) -> Source:
    import torch

    _check_pt2_pickles(path, allow_pickle)
    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise FormatError(f"{path} is not a loadable torch.export program: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                          hint="save it with torch.export.save(torch.export.export(model, args), path)") from None
    try:  # a program torch loaded may still be incoherent (its signature, its placeholders' metadata)
        user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        given = tuple(_example_from_meta(n) for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(user))
        module = ep.module()
    except EdgeshipError:
        raise
    except Exception as e:  # noqa: BLE001 - torch on a hand-edited program: any error, all typed
        raise FormatError(f"{path} is not a usable torch.export program: {type(e).__name__}: {first_line(e, 200)}",
                          hint="save it with torch.export.save(torch.export.export(model, args), path)") from None
    examples = make_examples(given, input_shapes, input_dtypes, str(path))  # by the names the Source gives
    return source_from_module(module, examples, TorchModel(module=module, example_inputs=()), name=path.stem,
                              origin=str(path), kind="pt2", dynamic_batch=dynamic_batch, digest=sha256_file(path),
                              exported=ep, allow_pickle=allow_pickle, ranges=ranges, generated=True, values=values,
                              readers=_exported_embedding_readers(ep))


def _exported_embedding_readers(ep: Any) -> dict[int, tuple[str, int]]:
    """User input index -> (weight name, rows) for each ``aten.embedding`` that reads a user input."""
    import torch

    user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    params = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.kind.name != "USER_INPUT"}
    found: dict[int, tuple[str, int]] = {}
    for n in ep.graph.nodes:
        if n.op == "call_function" and n.target in (torch.ops.aten.embedding.default,) and len(n.args) >= 2:
            weight, idx = n.args[0], n.args[1]
            val = getattr(weight, "meta", {}).get("val")
            if getattr(idx, "name", None) in user and val is not None and len(val.shape) >= 1:
                i, rows = user.index(idx.name), int(val.shape[0])
                if i not in found or rows < found[i][1]:
                    found[i] = (str(params.get(weight.name, weight.name)), rows)
    return found


def _example_from_meta(node: Any) -> np.ndarray:
    import torch

    val = node.meta.get("val")
    shape = tuple(int(d) if isinstance(d, int) else 2 for d in val.shape)
    if val.dtype.is_floating_point:
        return torch.randn(shape, dtype=val.dtype, generator=torch.Generator().manual_seed(0)).numpy()
    return torch.zeros(shape, dtype=val.dtype).numpy()
