"""A pruned store's ranges held against the archive: what ``verify`` of a whole store adds
when ``[archive]`` is configured.

Each ``prunes`` row names the day, the rows (count, first and last id, chain hash at the
last) and the SHA-256 of the archived manifest they were verified against. The rows are
gone from the store, so only the archive can say whether that prune was honest: the day
must be there, under that very manifest, naming those rows.
"""

from __future__ import annotations

import datetime as dt

from recorder.config import ArchiveSettings

from .manifest import Manifest
from .objectstore import archive_target, archived_manifest
from .verify import Problem, VerifyReport


def hold_pruned_against_archive(settings: ArchiveSettings, report: VerifyReport) -> None:
    """Add to ``report`` what the archive (``[archive]``) says against each pruned range it
    lists: the day missing there, a manifest other than the one verified when pruning (its
    SHA-256), or one that does not name those rows (count, ids, last chain hash). A
    ``prunes`` row written by hand to hide a deletion is found here."""
    if settings.url is None:
        return
    target = archive_target(settings)
    manifests: dict[dt.date, tuple[str, Manifest] | None] = {}
    for check in report.accounts:
        for gone in check.pruned:
            day = gone.trading_day
            if day not in manifests:
                manifests[day] = archived_manifest(target, day)
            found = manifests[day]
            what = None
            if found is None:
                what = f"pruned {day}, but the archive {settings.url} does not hold that day"
            elif found[0] != gone.manifest_sha256:
                digests = f"sha256 {found[0][:12]}, recorded {gone.manifest_sha256[:12]}"
                what = f"pruned {day}, but the archived manifest is another ({digests})"
            else:
                entry = found[1].accounts.get(check.account_id)
                archived = None if entry is None else (
                    entry.events, entry.first_id, entry.last_id, entry.last_chain_hash)  # fmt: skip
                if archived != (gone.rows, gone.first_id, gone.last_id, gone.head_last):
                    what = f"pruned {day}, but the archived manifest does not hold those rows"
            if what is not None:
                check.problems.append(Problem(what))
