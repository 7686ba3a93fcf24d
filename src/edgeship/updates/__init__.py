"""Model updates a fleet can trust: a TUF repository of release bundles (python-tuf).

``init_repo(REPO)`` makes the four role keys and the first metadata; ``publish(bundle, REPO,
channel, rollout)`` adds a signed bundle (from ``edgeship package``) to a channel. Layout::

    REPO/keys/{root,targets,snapshot,timestamp}.pem   role keys (0600; keep root's offline)
    REPO/metadata/1.root.json, N.targets.json, N.snapshot.json, timestamp.json
    REPO/targets/<sha256>.<name>                     target files, content-addressed
                                                     (consistent snapshots)

Targets are the bundles (``bundles/<name>-<version>.tar.gz``) and one small JSON per channel
(``channels/<channel>.json``: every release on it with its version, release counter and rollout
percentage). A device reads its channel through TUF, so the list is as trusted as the bundles.
Releases are ordered by their semantic version (:mod:`.semver`, semver.org precedence): a channel
takes only a version newer than its newest, and a device installs only a version newer than the
one it runs. The release counter is informational (it restarts in each destination folder).

Publishing is atomic: new target files and metadata are written under new names first and
``timestamp.json`` is replaced last, in one rename; a crash before it leaves the previous release
served, and what it left behind is unreferenced.
"""

from __future__ import annotations

from .repo import CHANNEL_SCHEMA, in_rollout, init_repo, publish, read_channel, refresh_timestamp, rollout_bucket

__all__ = ["init_repo", "publish", "refresh_timestamp", "in_rollout", "rollout_bucket", "read_channel", "CHANNEL_SCHEMA"]
