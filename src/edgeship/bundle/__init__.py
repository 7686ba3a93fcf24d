"""A release bundle: what an app developer ships, signed so a device can trust it.

``package(outdir, version)`` turns a deploy output folder into ``DEST/<model>-<version>/`` and
``DEST/<model>-<version>.tar.gz`` (default DEST: ``outdir/release``)::

    bundle.json        schema edgeship.bundle/1: version (semver), release counter, source I/O and
                       preprocessing, per artifact its runtime, what it requires and the version
                       verified here, fidelity and benchmark figures; the fallback order; every
                       file with sha256 and size; tool versions and the machine
    MODEL_CARD.md      what the model is, how to feed it, how well and how fast each artifact ran
    labels.txt         class labels, one per line (classifiers)
    artifacts/<id>/    each verified artifact folder, as deploy wrote it (one judged only on random
                       inputs only with allow_unverified; those left out are listed, with why)
    golden/            golden vectors (edgeship.bundle.golden)
    integration/       Android, iOS, Python (with its own light runtime) and web app code generated
                       from it (edgeship.bundle.integration, edgeship.bundle.light)
    model.sig          the OpenSSF model-signing signature (a Sigstore bundle) over every file above

Signing uses OpenSSF ``model-signing`` with an elliptic-curve key (``keygen``); without one,
``package`` makes ``outdir/keys/signing-key.pem`` (kept out of the bundle) and says so.
``verify_bundle`` checks a folder or a ``.tar.gz`` (extracted confined, with limits) against the
public key and fails closed, naming every extra, missing and changed file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._archive import safe_extract
from .._util import atomic_write_text, confined, make_folder, safe_name, tool_versions
from .._version import __version__
from ..artifact import Artifact, sha256_file, verification_status
from ..errors import EdgeshipError, FormatError, InputError, SecurityError, UsageError
from ..manifest import environment, load_manifest, write_manifest
from ..readers import parse_json, read_bytes, read_json, read_text, regular_file
from .card import model_card
from .integration import write_integration
from .releases import BUNDLE_JSON, next_version, released
from .semver import SEMVER
from .task_apps import TASK_APPS, write_task_integration

__all__ = ["package", "verify_bundle", "keygen", "next_version", "Bundle", "SCHEMA", "BUNDLE_JSON", "SIGNATURE"]

SCHEMA = "edgeship.bundle/1"
CARD = "MODEL_CARD.md"
SIGNATURE = "model.sig"
KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub.pem"
#: what ships first, precision by precision (the release's fallback order; deploy --benchmark measures
#: each target's first verified one)
PRECISION_ORDER = {"int8": 0, "fp16": 1, "palettize6": 1, "palettize4": 1, "fp32": 2}


@dataclasses.dataclass(frozen=True)
class Bundle:
    folder: Path
    tarball: Path
    doc: dict[str, Any]
    key: Path
    public_key: Path
    key_created: bool
    stage: dict[str, Any] = dataclasses.field(default_factory=dict)  # the manifest's stages.bundle record

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "folder": str(self.folder), "tarball": str(self.tarball), "version": self.doc["version"],
                "release": self.doc["release"], "fallback_order": self.doc["fallback_order"],
                "files": len(self.doc["files"]), "key": str(self.key), "public_key": str(self.public_key),
                "key_created": self.key_created}


# ---- keys --------------------------------------------------------------------------------

def keygen(out: str | Path) -> tuple[Path, Path]:
    """A new EC P-256 signing key: ``out/signing-key.pem`` (private, mode 0600) and
    ``out/signing-key.pub.pem``. Refuses to replace an existing key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out)
    priv, pub = out / KEY_FILE, out / PUBLIC_KEY_FILE
    for p in (priv, pub):
        if p.exists():
            raise UsageError(f"{p} exists: a signing key is never replaced",
                             hint="give another --out, or move the old key away if you mean to retire it")
    make_folder(out, "key folder")
    key = ec.generate_private_key(ec.SECP256R1())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    atomic_write_text(pub, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return priv, pub


def _public_key_of(private: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data = read_bytes(private, "private key", max_bytes=1 << 20, hint="make one with edgeship keygen --out DIR")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(f"{private} is not a readable unencrypted PEM private key: {str(e)[:120]}",
                         hint="make one with edgeship keygen --out DIR") from None
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _hashing(folder: Path) -> Any:
    from model_signing import hashing

    # model-signing 1.0 compares each file's path, as built from the folder argument, with the
    # ignored ones: give the signature's path in that same form
    return hashing.Config().set_ignored_paths(paths=[Path(folder) / SIGNATURE])


# ---- package -----------------------------------------------------------------------------

def same_release(outdir: str | Path, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The ``stages.bundle`` record of the release an output folder's manifest ``doc`` already has
    (in ``doc``'s stages, carried from the run before) when packaging it again would ship the same:
    the same source and, artifact by artifact, the same bytes (digests) as that release holds, its
    folder and tarball still there. None when something changed (a new release is due)."""
    stage = (doc.get("stages") or {}).get("bundle")
    if not isinstance(stage, dict) or not isinstance(stage.get("folder"), str) or not isinstance(stage.get("tarball"), str):
        return None
    outdir = Path(outdir)
    try:
        folder = confined(outdir, stage["folder"], f"{outdir}/manifest.json: stages.bundle.folder")
        tarball = confined(outdir, stage["tarball"], f"{outdir}/manifest.json: stages.bundle.tarball")
        release = read_json(folder / BUNDLE_JSON, "release record", links=False)
    except EdgeshipError:
        return None
    if not tarball.is_file() or not isinstance(release, dict) or release.get("version") != stage.get("version"):
        return None
    allow = bool((doc.get("config") or {}).get("allow_unverified") is True)
    records, _ = release_records([r for r in doc.get("artifacts") or [] if isinstance(r, dict)], allow)
    now = {str(r.get("id") or r.get("path")): r.get("digest") for r in records}
    shipped = {str(e.get("id")): e.get("digest") for e in release.get("artifacts") or [] if isinstance(e, dict)}
    same_source = (release.get("source") or {}).get("digest") == (doc.get("source") or {}).get("digest")
    return stage if now and now == shipped and same_source else None


def release_records(records: list[dict[str, Any]], allow_unverified: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the artifact records a release takes, the others as {id, status, why, fix}). It takes the
    verified ones and those only structurally checked (Core ML off macOS, said in the card);
    an artifact judged only on random inputs (``unverified``) only with ``allow_unverified``; never
    one whose check failed or that has none."""
    taken, left = [], []
    for rec in records:
        aid = str(rec.get("id") or rec.get("path"))
        v = rec.get("verification")
        status = verification_status(v, str(rec.get("precision") or "") or None) if isinstance(v, dict) and v else None
        if status in ("verified", "structural") or (status == "unverified" and allow_unverified):
            taken.append(rec)
            continue
        if status == "unverified":
            why = "judged only on random inputs"
            fix = str(v.get("note") or "give real data with --eval, or --allow-unverified to ship it anyway")
        elif status == "failed":
            why, fix = "its verification failed", "deploy it again"
        else:
            why, fix = "it has no verification record", "deploy it again"
        left.append({"id": aid, "status": status or "none", "why": why, "fix": fix})
    return taken, left


def can_run_here(a: Artifact) -> bool | str:
    """True when ``a``'s runtime runs on this machine, else why not (golden vectors of an artifact
    that cannot run here are borrowed from an fp32 one that can)."""
    from ..targets import target_of

    t = target_of(a)
    ok = t.can_run_here()
    if ok is not True:
        return ok
    missing = t.check_environment()
    return True if not missing else f"{t.name} needs {', '.join(missing)}"


def _fidelity(rec: dict[str, Any]) -> dict[str, Any]:
    v = rec.get("verification") or {}
    outs = [o for o in v.get("outputs") or [] if isinstance(o, dict)]
    status = verification_status(v, str(rec.get("precision") or "") or None)
    return {"passed": v.get("passed"), "status": status, "inputs": v.get("inputs"),
            **({"note": v["note"]} if status != "verified" and v.get("note") else {}),
            "reference": v.get("reference"), "criterion": v.get("criterion"),
            "samples": v.get("samples"), "top1_agreement": v.get("top1_agreement"),
            "cosine_min": min((o.get("cosine") for o in outs if isinstance(o.get("cosine"), (int, float))), default=None),
            "max_abs": max((o.get("max_abs") for o in outs if isinstance(o.get("max_abs"), (int, float))), default=None)}


def package(outdir: str | Path, version: str | None = None, sign_key: str | Path | None = None,
            dest: str | Path | None = None, progress: Callable[[str], None] | None = None,
            allow_unverified: bool | None = None, record: bool = True) -> Bundle:
    """Package the verified artifacts of a deploy output folder as a signed release bundle.
    ``record``: write its ``stages.bundle`` into the folder's manifest (deploy, which writes the
    manifest itself, takes it from :attr:`Bundle.stage` instead).

    Artifacts judged only on random inputs (status ``unverified``) are left out, and said, unless
    ``allow_unverified`` (None: as the deploy that wrote the folder was told, its manifest's
    ``config.allow_unverified``); the bundle then marks them so in ``bundle.json`` and the card."""
    from ..targets import load_artifact, target_of  # the target registry, and numpy with the golden samples
    from .golden import GOLDEN_JSON, embedding_golden_inputs, stream_golden_audio, write_golden, write_stream_golden

    say = progress or (lambda _m: None)
    outdir = Path(outdir)
    dest = Path(dest) if dest is not None else outdir / "release"
    version = version or next_version(dest)
    if not SEMVER.match(version):
        raise UsageError(f"--version {version!r} is not a semantic version", hint="write it like 1.2.0 (or 1.2.0-rc.1)")
    m = load_manifest(outdir)
    if m is None:
        raise InputError(f"{outdir} holds no manifest.json", hint="give a folder written by edgeship deploy")
    allow = bool(m.config.get("allow_unverified") is True) if allow_unverified is None else bool(allow_unverified)
    records, left_out = release_records(m.records, allow)
    for x in left_out:
        say(f"{x['id']} not released: {x['why']}" + (" (--allow-unverified)" if x["status"] == "unverified" else ""))
    if not records:
        unverified = [x["id"] for x in left_out if x["status"] == "unverified"]
        if unverified:
            raise InputError(f"{outdir} holds no verified artifact to package: {', '.join(unverified)} "
                             "judged only on random inputs", hint=next(x["fix"] for x in left_out if x["status"] == "unverified"))
        raise InputError(f"{outdir} holds no verified artifact to package", hint="run edgeship deploy first")
    src = m.source
    name = f"{safe_name(str(src.get('name') or 'model'))}-{version}"
    folder, tarball = dest / name, dest / f"{name}.tar.gz"
    for p in (folder, tarball):
        if p.exists():
            raise UsageError(f"{p} exists: a released version is never rewritten", hint="give a new --version")

    key, public, key_created = signing_key(outdir, sign_key, dest, name, say)

    def fill(tmp: Path) -> dict[str, Any]:
        arts: list[Artifact] = []
        for rec in records:
            src_folder = m.artifact_folder(rec)
            art = load_artifact(src_folder)
            art.verify_files()  # a file changed since deploy is not shipped
            aid = str(rec.get("id") or src_folder.name)
            say(f"copying {aid}")
            shutil.copytree(src_folder, tmp / "artifacts" / aid, symlinks=False)
            arts.append(load_artifact(tmp / "artifacts" / aid))
        labels = next((a.labels for a in arts if a.labels), None)
        if labels:
            (tmp / "labels.txt").write_text("".join(f"{lab}\n" for lab in labels))
        outs = src.get("outputs") or []
        last = (outs[0].get("shape") or [None])[-1] if outs and isinstance(outs[0], dict) else None
        classifier = bool(labels) and last == len(labels)

        task = next((a.task.model_dump(mode="json") for a in arts if a.task is not None), None)
        kind = (task or {}).get("kind")
        run_here = lambda a: target_of(a).runner(a, threads=1)  # noqa: E731
        if kind == "embedding" and task.get("tokenizer") == "wordpiece":
            task = {**task, "vocabulary": write_vocabulary(tmp, task)}
        if kind == "voice_activity":
            audio, origin = stream_golden_audio(m.config, int(task["sample_rate"]))
            golden = write_stream_golden(tmp, task, arts, audio, origin, run_here, can_run_here, say)
        elif kind == "embedding" and task.get("tokenizer") == "wordpiece":
            from ..runtime import Embedder
            from ..tasks.text import read_vocabulary

            vocab = read_vocabulary(read_text(tmp / task["vocabulary"], "WordPiece vocabulary"))
            tok = Embedder(None, task, vocab, list(src.get("inputs") or [])).tokens
            samples, texts, origin = embedding_golden_inputs(m.config, tok)
            golden = write_golden(tmp, src, arts, False, run_here, can_run_here, say, samples=samples, origin=origin)
            for rec in golden["artifacts"].values():
                if "inputs" in rec:
                    rec["texts"] = texts
            (tmp / GOLDEN_JSON).write_text(json.dumps(golden, indent=1) + "\n")
        else:
            golden = write_golden(tmp, src, arts, classifier, run_here, can_run_here, say)

        bench_by_id = {}
        for a in arts:
            b = m.benchmark(a.root.name)
            if b:
                bench_by_id[a.root.name] = {"p50_ms": b["latency_ms"], "threads": b.get("threads")}
        entries = []
        for rec, a in zip(records, arts):
            aid = a.root.name
            entries.append({
                "id": aid, "target": a.target, "format": a.format.value, "precision": a.precision,
                "path": f"artifacts/{aid}", "model_file": f"artifacts/{aid}/{a.model_file}",
                "inputs": [s.model_dump(mode="json") for s in a.inputs],
                "outputs": [s.model_dump(mode="json") for s in a.outputs],
                "preprocess": a.preprocess.model_dump(mode="json") if a.preprocess else None,
                **({"task": {**a.task.model_dump(mode="json"), **({"vocabulary": task["vocabulary"]}
                                                                     if kind == "embedding" and task else {})}}
                   if a.task else {}),
                "size_bytes": sum(f.size for f in a.files), "digest": rec.get("digest"),
                "runtime": target_of(a).runtime_requirement(a), "fidelity": _fidelity(rec),
                "benchmark": bench_by_id.get(aid), "golden": "skipped" not in golden["artifacts"].get(aid, {"skipped": 1}),
                "tool_versions": a.provenance.tool_versions,
                # what a runtime must set when it loads the artifact (weight-only int8)
                **({"session_config": a.details["session_config"]} if a.details.get("session_config") else {})})
        order = sorted(entries, key=lambda e: (e["fidelity"]["status"] == "unverified",  # shipped when asked, tried last
                                               (e["benchmark"] or {}).get("p50_ms", float("inf")),
                                               PRECISION_ORDER.get(e["precision"], 1), e["size_bytes"]))
        releases = [d["release"] for _, d in released(dest) if isinstance(d.get("release"), int)]
        doc: dict[str, Any] = {
            "schema": SCHEMA, "name": str(src.get("name") or "model"), "version": version,
            "release": max(releases, default=0) + 1,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "edgeship_version": __version__,
            "source": {k: src.get(k) for k in ("name", "kind", "origin", "digest", "inputs", "outputs", "preprocess")},
            "labels": "labels.txt" if labels else None, "labels_count": len(labels) if labels else 0,
            **({"task": task} if task else {}),
            "artifacts": entries, "fallback_order": [e["id"] for e in order],
            **({"left_out": left_out} if left_out else {}),
            "fallback_rule": ("measured p50 first (deploy --benchmark), else int8, then fp16, then fp32; artifacts "
                              "judged only on random inputs (--allow-unverified) after all others; a device "
                              "skips an artifact it cannot load or that fails its golden vectors"),
            "golden": GOLDEN_JSON, "card": CARD, "signature": SIGNATURE,
            "tool_versions": tool_versions("model-signing"), "environment": environment(),
        }
        say("generating the Android, iOS, Python and web integration code")
        if kind in TASK_APPS:
            write_task_integration(tmp, doc)
        else:
            write_integration(tmp, doc)
        (tmp / CARD).write_text(model_card(doc))
        return doc

    doc = seal(dest, name, fill, key, public, say)
    stage = {"version": version, "release": doc["release"], "folder": os.path.relpath(folder, outdir),
                        "tarball": os.path.relpath(tarball, outdir), "public_key": os.path.relpath(public, outdir),
                        "key": os.path.relpath(key, outdir), "key_created": key_created,
                        "fallback_order": doc["fallback_order"], "contents": _contents(doc["files"], tarball),
                        "left_out": left_out, "allow_unverified": allow}
    if record:
        m.doc.setdefault("stages", {})["bundle"] = stage
        write_manifest(outdir, m.doc)
    return Bundle(folder=folder, tarball=tarball, doc=doc, key=key, public_key=public, key_created=key_created,
                  stage=stage)


VOCABULARY = "vocab.txt"


def write_vocabulary(tmp: Path, task: dict[str, Any]) -> str:
    """The WordPiece vocabulary of an embedding task into the bundle (``vocab.txt``, one token per
    line), read again through its reader and checked against the digest the deploy recorded: a
    vocabulary changed since would tokenise otherwise than the verified model. Returns its name."""
    from ..readers.tokenizer import read_tokenizer, vocabulary_sha256, vocabulary_text

    vocab, _ = read_tokenizer(task["vocabulary"])
    text, digest = vocabulary_text(vocab), vocabulary_sha256(vocab)
    if task.get("vocabulary_sha256") and digest != task["vocabulary_sha256"]:
        raise InputError(f"{task['vocabulary']} changed since the deploy (its tokens' sha256 {digest[:12]}, recorded "
                         f"{str(task['vocabulary_sha256'])[:12]})", hint="deploy again with this vocabulary")
    (tmp / VOCABULARY).write_text(text, encoding="utf-8")
    return VOCABULARY


def signing_key(outdir: Path, sign_key: str | Path | None, dest: Path, name: str,
                say: Callable[[str], None]) -> tuple[Path, Path, bool]:
    """(the private key, where its public half is or goes, whether it was made now): the key given,
    else ``outdir/keys``'s, made when missing. The public half is beside the key when it matches,
    else it goes beside the bundle (``dest/<name>.pub.pem``)."""
    key_created = False
    if sign_key is not None:
        key = Path(sign_key)
        if not key.is_file():
            raise InputError(f"no signing key at {key}", hint="make one with edgeship keygen --out DIR")
    else:
        key = outdir / "keys" / KEY_FILE
        if not key.is_file():
            say(f"creating a signing key in {key.parent}")
            keygen(key.parent)
            key_created = True
    public = key.parent / PUBLIC_KEY_FILE
    pub_bytes = _public_key_of(key)
    if not public.is_file() or public.stat().st_size > (1 << 20) or public.read_bytes().strip() != pub_bytes.strip():
        public = dest / f"{name}.pub.pem"  # the public half, beside the bundle, when none is beside the key
    return key, public, key_created


def seal(dest: Path, name: str, fill: Callable[[Path], dict[str, Any]], key: Path, public: Path,
         say: Callable[[str], None]) -> dict[str, Any]:
    """Build a release as ``dest/<name>/`` and ``dest/<name>.tar.gz``: ``fill(folder)`` writes its
    files into a scratch folder of that name and returns bundle.json's record; the file list is
    added, the folder signed and archived, and both moved into place only when all of it worked
    (a failure leaves ``dest`` as it was). Returns the record."""
    make_folder(dest, "release folder")
    # built under its final name inside a temp folder: the signature names the folder
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest))
    tmp = scratch / name
    tmp.mkdir()
    try:
        doc = fill(tmp)
        doc["files"] = [{"path": p.relative_to(tmp).as_posix(), "sha256": sha256_file(p), "size": p.stat().st_size}
                        for p in sorted(tmp.rglob("*")) if p.is_file()]
        (tmp / BUNDLE_JSON).write_text(json.dumps(doc, indent=1) + "\n")
        say("signing (OpenSSF model-signing, EC key)")
        _sign(tmp, key)
        tar_tmp = scratch / f"{name}.tar.gz"
        _tar(tmp, name, tar_tmp)
        if not public.is_file():
            atomic_write_text(public, _public_key_of(key).decode())
        os.replace(tmp, dest / name)
        os.replace(tar_tmp, dest / f"{name}.tar.gz")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return doc


def _contents(files: list[dict[str, Any]], tarball: Path) -> dict[str, Any]:
    """What the bundle holds, for the report: bytes per part (``artifacts/<id>``,
    ``integration/<platform>``, ``golden``, the rest by name), the file count and total, and the
    .tar.gz's size."""
    parts: dict[str, int] = {}
    for f in files:
        bits = f["path"].split("/")
        part = "/".join(bits[:2]) if bits[0] in ("artifacts", "integration") and len(bits) > 2 else bits[0]
        parts[part] = parts.get(part, 0) + int(f["size"])
    return {"files": len(files), "bytes": sum(parts.values()), "tarball_bytes": tarball.stat().st_size, "parts": parts}


def _sign(folder: Path, key: Path) -> None:
    from model_signing import hashing, signing

    class OfflineConfig(signing.Config):
        """model-signing 1.0's Config() starts a Sigstore signer, which fetches Sigstore's TUF root
        from the internet even when a local key signs; this one starts with no signer."""

        def __init__(self) -> None:
            self._hashing_config = hashing.Config()

    try:
        OfflineConfig().use_elliptic_key_signer(private_key=str(key)).set_hashing_config(_hashing(folder)).sign(
            str(folder), str(folder / SIGNATURE))
    except (ValueError, TypeError, OSError) as e:
        raise InputError(f"model-signing could not sign with {key}: {str(e)[:200]}",
                         hint="give an EC private key in PEM (edgeship keygen makes one)") from None


def _tar(folder: Path, name: str, out: Path) -> None:
    """A reproducible .tar.gz of ``folder`` as ``name/``: sorted members, no owners, fixed times."""
    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = 0
        ti.mode = 0o755 if ti.isdir() else 0o644
        return ti

    import gzip

    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=name, recursive=False, filter=clean)
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=f"{name}/{p.relative_to(folder).as_posix()}", recursive=False, filter=clean)


# ---- verify ------------------------------------------------------------------------------

def _signed_diff(folder: Path) -> list[str]:
    """The files of ``folder`` against the list the signature's statement names (read, not
    trusted: it only names what differs once the signature has failed): extra, missing, changed."""
    import base64

    try:
        env = read_json(folder / SIGNATURE, "signature", links=False)["dsseEnvelope"]
        statement = parse_json(base64.b64decode(env["payload"]).decode("utf-8"), "signed statement")
        signed = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    except (EdgeshipError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return _diff(folder, signed, skip=(SIGNATURE,))


def _diff(folder: Path, expected: dict[str, str], skip: tuple[str, ...]) -> list[str]:
    """The files under ``folder`` (but ``skip``) against ``expected`` (path -> sha256): one line
    per extra, missing and changed file."""
    present = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    for name in skip:
        present.pop(name, None)
    out = [f"extra: {p}" for p in sorted(set(present) - set(expected))]
    out += [f"missing: {p}" for p in sorted(set(expected) - set(present))]
    out += [f"changed: {p}" for p in sorted(set(expected) & set(present)) if sha256_file(present[p]) != expected[p]]
    return out


def verify_bundle(bundle: str | Path, key: str | Path) -> dict[str, Any]:
    """Check a bundle folder (or its .tar.gz) against the public key ``key``: the signature over
    every file, then bundle.json's own file list. Fails closed (SecurityError) naming every extra,
    missing and changed file; returns a summary when it holds."""
    bundle, key = Path(bundle), Path(key)
    regular_file(key, "public key", max_bytes=1 << 20, hint="give the signing-key.pub.pem that came with the release")
    if not bundle.exists():
        raise InputError(f"no bundle at {bundle}", hint="give the bundle folder or its .tar.gz")
    with tempfile.TemporaryDirectory(prefix="edgeship-verify-") as tmp:
        folder = bundle
        if bundle.is_file():
            names = safe_extract(bundle, Path(tmp) / "x")
            tops = {n.split("/", 1)[0] for n in names}
            if len(tops) != 1:
                raise SecurityError(f"{bundle} holds {len(tops)} top-level entries, a bundle one folder",
                                    hint="this is not a tarball edgeship package wrote")
            folder = Path(tmp) / "x" / tops.pop()
        return _verify_folder(folder, key, shown=bundle)


def _verify_folder(folder: Path, key: Path, shown: Path) -> dict[str, Any]:
    from model_signing import verifying

    if not (folder / SIGNATURE).is_file():
        raise SecurityError(f"{shown} is not signed (no {SIGNATURE})", hint="package it again with a signing key")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=str(key)).set_hashing_config(_hashing(folder)).verify(
            str(folder), str(folder / SIGNATURE))
    except Exception:  # noqa: BLE001 - every failure of the check is a refusal, never a pass
        problems = _signed_diff(folder)
        detail = "; ".join(problems) if problems else "the signature does not verify with this key"
        raise SecurityError(f"{shown} fails its signature check: {detail}",
                            hint="do not install it; fetch the release again, or check that the key is the "
                                 "one it was signed with", problems=problems) from None
    doc = read_json(folder / BUNDLE_JSON, "release record", links=False, hint="fetch the release again")
    try:
        listed = {f["path"]: f.get("sha256") for f in doc["files"]}
    except (KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{shown}: {BUNDLE_JSON} is not readable: {str(e)[:200]}") from None
    problems = _diff(folder, listed, skip=(BUNDLE_JSON, SIGNATURE))
    if problems:  # signed, yet inconsistent with its own list: refused all the same
        raise SecurityError(f"{shown} does not match its {BUNDLE_JSON}: " + "; ".join(problems),
                            hint="do not install it", problems=problems)
    return {"ok": True, "bundle": str(shown), "name": doc.get("name"), "version": doc.get("version"),
            "release": doc.get("release"), "files": len(listed), "fallback_order": doc.get("fallback_order"),
            "signature": "valid (OpenSSF model-signing, EC key)"}
