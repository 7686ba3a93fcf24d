"""Commands of the update channel: repo (init, refresh), publish, serve-updates, agent (a device's
update agent: run, init, status). ``serve`` is in :mod:`.commands_run`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from ..errors import UsageError, printable
from .console import err_console
from .help import Command, Group
from .options import JSON_OPT
from .run import run_command

__all__ = ["agent_app", "publish", "repo_app", "serve_updates"]


repo_app = typer.Typer(cls=Group, no_args_is_help=True, help="TUF update repositories (init, refresh).")


@repo_app.command("init", cls=Command)
def repo_init(
    repo: Path = typer.Argument(..., metavar="REPO_DIR", help="a new folder for the repository"),
    as_json: bool = JSON_OPT,
) -> None:
    """Make a TUF update repository: a key per role (root, targets, snapshot, timestamp) and root.json."""
    from .. import api

    def body():
        doc = api.repo_init(repo)

        def human(c: Console) -> None:
            c.print(f"repository: {doc['repo']}", markup=False, highlight=False)
            c.print(f"trusted root for devices: {doc['root']} (edgeship agent init --root ...)", markup=False, highlight=False)
            c.print(f"keys: {doc['keys']} (mode 0600; keep root.pem offline once devices are provisioned)",
                    markup=False, highlight=False)

        return {"ok": True, **doc}, human

    run_command(as_json, body)


@repo_app.command("refresh", cls=Command)
def repo_refresh(
    repo: Path = typer.Argument(..., metavar="REPO_DIR", help="the update repository"),
    days: int = typer.Option(7, "--days", metavar="N", help="days until the new timestamp expires"),
    as_json: bool = JSON_OPT,
) -> None:
    """Re-sign the timestamp (run it daily): devices refuse a repository whose timestamp expired as frozen."""
    from .. import api

    def body():
        doc = api.repo_refresh(repo, days=days)
        return doc, lambda c: c.print(f"timestamp version {doc['timestamp_version']}, expires {doc['expires']}",
                                      markup=False, highlight=False)

    run_command(as_json, body)


def publish(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="a bundle's .tar.gz written by edgeship package"),
    repo: Path = typer.Option(..., "--repo", metavar="REPO_DIR", help="the update repository (edgeship repo init)"),
    channel: str = typer.Option("stable", "--channel", metavar="NAME", help="the channel devices follow"),
    rollout: float = typer.Option(100.0, "--rollout", metavar="PERCENT", help="share of the channel's devices that take it"),
    key: Path | None = typer.Option(None, "--key", metavar="PUB", help="check the bundle's signature with this public key first"),
    as_json: bool = JSON_OPT,
) -> None:
    """Publish a signed bundle to a channel of an update repository (atomically; never a downgrade)."""
    from .. import api

    def body():
        doc = api.publish(bundle, repo, channel=channel, rollout=rollout, key=key)

        def human(c: Console) -> None:
            c.print(f"published {doc['version']} (release {doc['release']}) to {doc['channel']} at {doc['rollout']:g}%: "
                    f"{doc['releases_on_channel']} release(s) on the channel", markup=False, highlight=False)

        return doc, human

    run_command(as_json, body)


def serve_updates(
    repo: Path = typer.Argument(..., metavar="REPO_DIR", help="the update repository"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="address to listen on"),
    port: int = typer.Option(8080, "--port", metavar="N", help="port to listen on"),
) -> None:
    """Serve an update repository over HTTP: metadata, bundles (range requests), /healthz; a log line per request."""
    from .. import api

    def body():
        try:  # it says where it listens, a line per request, and "stopped" on Ctrl-C (stderr)
            api.serve_updates(repo, host=host, port=port)
        except KeyboardInterrupt:  # before uvicorn took over the signal: nothing was served yet
            err_console.print("stopped", highlight=False, markup=False)
        return {"ok": True}, None

    run_command(False, body)


agent_app = typer.Typer(cls=Group, invoke_without_command=True,
                        help="The device update agent: check, install A/B, health-check, commit or roll back.")


@agent_app.callback()
def agent(
    ctx: typer.Context,
    server: str | None = typer.Option(None, "--server", metavar="URL", help="the update server (edgeship serve-updates)"),
    state: Path | None = typer.Option(None, "--state", metavar="DIR", help="the agent's state folder (edgeship agent init)"),
    device_id: str | None = typer.Option(None, "--device-id", metavar="ID", help="this device's id (default: the one set at init)"),
    once: bool = typer.Option(False, "--once", metavar="", help="one check, then exit"),
    interval: float = typer.Option(60.0, "--interval", metavar="S", help="seconds between checks (doubled while checks fail)"),
    max_backoff: float = typer.Option(900.0, "--max-backoff", metavar="S", help="the longest wait between failed checks"),
    as_json: bool = JSON_OPT,
) -> None:
    """Check the update server and install what the device's channel and rollout say (A/B, health-checked)."""
    if ctx.invoked_subcommand is not None:
        return
    from .. import api

    def body():
        if server is None or state is None:
            raise UsageError("edgeship agent needs --server URL and --state DIR", hint="provision first: edgeship agent init")
        try:
            # a long-running agent says each check on stderr (a device's log); one check answers once
            say = None if once else (lambda line: print(printable(line), file=sys.stderr, flush=True))
            res = api.agent_run(state, server, device_id=device_id, once=once, interval=interval, max_backoff=max_backoff,
                                say=say)
        except KeyboardInterrupt:
            raise KeyboardInterrupt("agent stopped: the active release keeps serving; a check cut short is finished "
                                    "(or rolled back) at the next start") from None
        if once and not res.get("ok"):  # a script or a device's init system must see a failed check
            from ..updates.agent import check_failed

            raise check_failed(res, server)

        def human(c: Console) -> None:
            c.print(f"{res.get('action')}: " + (res.get("reason") or f"{res.get('version')} (release {res.get('release')})"),
                    markup=False, highlight=False)

        return res, human

    run_command(as_json, body)


@agent_app.command("init", cls=Command)
def agent_init(
    state: Path = typer.Option(..., "--state", metavar="DIR", help="a new state folder"),
    root: Path = typer.Option(..., "--root", metavar="ROOT_JSON", help="the repository's trusted root (metadata/1.root.json)"),
    bundle_key: Path = typer.Option(..., "--bundle-key", metavar="PUB", help="the public key releases are signed with"),
    channel: str = typer.Option("stable", "--channel", metavar="NAME", help="the channel to follow"),
    device_id: str | None = typer.Option(None, "--device-id", metavar="ID", help="this device's id (default: a new random one)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Provision a device: trusted root, bundle key, channel."""
    from .. import api

    def body():
        doc = api.agent_init(state, root, bundle_key, channel=channel, device_id=device_id)
        return doc, lambda c: c.print(f"provisioned {doc['state']}: channel {doc['channel']}, device {doc['device_id']}",
                                      markup=False, highlight=False)

    run_command(as_json, body)


@agent_app.command("status", cls=Command)
def agent_status(
    state: Path = typer.Option(..., "--state", metavar="DIR", help="the agent's state folder"),
    as_json: bool = JSON_OPT,
) -> None:
    """The active and previous release, channel, last check, last failure and its reason."""
    from .. import api

    def body():
        doc = api.agent_status(state)

        def human(c: Console) -> None:
            a = doc["active"]
            lines = [f"device {doc['device_id']} on {doc['channel']}",
                     f"active: {str(a['version']) + ' (release ' + str(a['release']) + '), slot ' + str(a['slot']) if a else 'none'}",
                     f"previous: {doc['previous']['version'] if doc['previous'] else 'none'}",
                     f"last check: {doc['last_check'] or 'never'} ({doc['last_result'] or '-'})",
                     f"last failure: {doc['last_failure']['reason'] if doc['last_failure'] else 'none'}"]
            if doc.get("bad_releases"):  # failed here, never tried again
                lines.append(f"not installed again: {', '.join(map(str, doc['bad_releases']))}")
            for ln in lines:
                c.print(ln, markup=False, highlight=False)

        return doc, human

    run_command(as_json, body)
