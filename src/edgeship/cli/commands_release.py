"""Commands that ship a deploy: package (a signed release bundle), verify, keygen, release prune."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from .._table import print_table, size_text
from .help import Command, Group
from .options import JSON_OPT
from .run import progress, run_command

__all__ = ["keygen", "package", "release_app", "verify"]


def package(
    outdir: Path = typer.Argument(Path("edgeship-out"), metavar="OUTDIR", help="an output folder written by edgeship deploy"),
    version: str | None = typer.Option(None, "--version", metavar="X.Y.Z",
                                       help="the release's semantic version (default: the next patch after the "
                                            "newest in the destination, else 0.1.0)"),
    sign_key: Path | None = typer.Option(None, "--sign-key", metavar="KEY",
                                         help="EC private key (PEM) to sign with (default: OUTDIR/keys, made if missing)"),
    dest: Path | None = typer.Option(None, "--dest", metavar="DIR", help="where the bundle goes (default: OUTDIR/release)"),
    allow_unverified: bool | None = typer.Option(
        None, "--allow-unverified/--no-allow-unverified",
        help="ship fp16/int8 artifacts judged only on random inputs (default: as the deploy was told)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Package OUTDIR's verified artifacts as a signed release bundle (folder and .tar.gz)."""
    from .. import api

    def body():
        with progress() as update:
            b = api.package(outdir, version=version, sign_key=sign_key, dest=dest, progress=update,
                            allow_unverified=allow_unverified)

        def human(c: Console) -> None:
            rows = [[aid, next((a["runtime"]["name"] for a in b.doc["artifacts"] if a["id"] == aid), "?"),
                     size_text(next((a["size_bytes"] for a in b.doc["artifacts"] if a["id"] == aid), 0))]
                    for aid in b.doc["fallback_order"]]
            print_table(c, f"release {b.doc['name']} {b.doc['version']} (release {b.doc['release']}), in fallback order",
                        ["artifact", "runtime", "size"], rows)
            for x in b.doc.get("left_out") or []:
                c.print(f"{x['id']} not released: {x['why']}" + (" (--allow-unverified)" if x["status"] == "unverified"
                                                                 else ""), markup=False, highlight=False)
            c.print(f"bundle: {b.folder}", markup=False, highlight=False)
            c.print(f"tarball: {b.tarball} ({size_text(b.tarball.stat().st_size)})", markup=False, highlight=False)
            c.print(f"signed with {b.key}; check it with: edgeship verify {b.tarball} --key {b.public_key}",
                    markup=False, highlight=False)
            if b.key_created:
                c.print(f"a new signing key was made in {b.key.parent}: keep {b.key.name} private and back it up; "
                        "devices trust releases signed with it", markup=False, highlight=False)

        return b.to_dict(), human

    run_command(as_json, body)


def verify(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="a bundle folder or its .tar.gz"),
    key: Path = typer.Option(..., "--key", metavar="PUB", help="the public key (PEM) the release was signed with"),
    as_json: bool = JSON_OPT,
) -> None:
    """Check a release bundle's signature and files; fails (exit 6) naming every extra, missing or changed file."""
    from .. import api

    def body():
        res = api.verify_bundle(bundle, key)

        def human(c: Console) -> None:
            c.print(f"{bundle}: {res['name']} {res['version']} (release {res['release']}): signature valid, "
                    f"{res['files']} files as listed", markup=False, highlight=False)

        return res, human

    run_command(as_json, body)


def keygen(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="folder for signing-key.pem and signing-key.pub.pem"),
    as_json: bool = JSON_OPT,
) -> None:
    """Make an EC signing key pair for release bundles (the private key is written mode 0600)."""
    from .. import api

    def body():
        priv, pub = api.keygen(out)

        def human(c: Console) -> None:
            c.print(f"private key: {priv} (keep it private and backed up)", markup=False, highlight=False)
            c.print(f"public key: {pub} (give it to whoever verifies your releases)", markup=False, highlight=False)

        return {"ok": True, "private_key": str(priv), "public_key": str(pub)}, human

    run_command(as_json, body)


release_app = typer.Typer(cls=Group, no_args_is_help=True, help="An output folder's releases (prune).")


@release_app.command("prune", cls=Command)
def release_prune(
    outdir: Path = typer.Argument(Path("edgeship-out"), metavar="OUTDIR", help="an output folder written by deploy"),
    keep: int = typer.Option(3, "--keep", metavar="N", min=0, help="how many of the newest releases to keep"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would go; remove nothing"),
    as_json: bool = JSON_OPT,
) -> None:
    """Remove all but the newest releases in OUTDIR/release (never the current one, nor one an
    update repository still serves)."""
    from .. import api

    def body():
        doc = api.release_prune(outdir, keep, dry_run)

        def human(c: Console) -> None:
            verb = "would remove" if dry_run else "removed"
            c.print(f"{verb}: {', '.join(doc['removed']) or 'nothing'}; kept: {', '.join(doc['kept']) or 'none'}",
                    markup=False, highlight=False)
            for s in doc["served"]:
                c.print(f"kept {s['version']}: the update repository {s['repo']} serves it", markup=False,
                        highlight=False)

        return doc, human

    run_command(as_json, body)
