"""The collector of a multiple import: each folder its `watch` matches is a drop, started
once the whole drop is there.

A drop is complete when
  - with `drop.manifest`: the manifest is there (the sender writes it last), names each
    part's file, and each named file is there and complete;
  - without: every part's `source.path` is in the folder, each complete (its ready
    marker, or the same size and mtime or ETag as at the last tick).
Its run key names the folder and every part file's content (path, size, version,
SHA-256 or ETag), so a drop is loaded once, and a folder filled again with new files is a
new drop. The run reads the content the tick saw (`campaign/part_keys`). Once its run
ended, the drop's files move together to `<archive or error>/<folder name>.<run id>/`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

import dagster as dg

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.inbox import Seen, file_key
from campaign_pipelines.jobs import run_config
from campaign_pipelines.names import ARCHIVE_TAG, FILE_KEY_TAG, FILE_TAG, PART_KEYS_TAG, TEMPLATE_TAG
from campaign_pipelines.sensors import SETTLED, CollectorTick
from campaign_pipelines.templates.drops import manifest_files


class DropTick(CollectorTick):
    """One evaluation of a multiple import's collector (the cursor as a file collector's)."""

    def _drop_files(self, folder: str, files: dict[str, Seen]) -> dict[str, Seen] | None:
        """The drop's files by part (and the manifest), once every one is there; None while not."""
        manifest = self.template.drop.manifest if self.template.drop else None
        parts = [p.name for p in self.template.parts]
        if manifest:
            listed = files.get(manifest)
            if listed is None:
                return None  # the sender has not finished
            try:
                named = manifest_files(self.inbox.read_text(listed), self.inbox.where(listed.name), parts)
            except (OSError, UnicodeDecodeError, CampaignError) as exc:
                self._skip(listed.name, listed.identity, str(exc).removesuffix("; nothing of the drop was loaded."))
                return None
        else:
            named = {p.name: p.source.path or "" for p in self.template.parts}
        found = {part: files.get(name) for part, name in named.items()}
        missing = [f"{part} ({named[part]})" for part, seen in found.items() if seen is None]
        if missing:
            if manifest:  # the manifest says the drop is whole: it is not
                self._skip(files[manifest].name, files[manifest].identity, f"the drop {folder} lacks {', '.join(missing)}, which its manifest names")
            return None
        if manifest:
            found[""] = files[manifest]  # moved with the drop; a change to it is a new drop
        return found  # type: ignore[return-value]

    def evaluate(self, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
        folders: dict[str, dict[str, Seen]] = {}
        for seen in self.inbox.candidates(self.template.collected_files or "", self.collector.ready_marker, self._skip):
            self.seen[seen.name] = seen.identity
            folders.setdefault(posixpath.dirname(seen.name), {})[posixpath.basename(seen.name)] = seen
        complete: list[tuple[str, dict[str, Seen], str, dict[str, str]]] = []
        for folder, files in sorted(folders.items()):
            drop = self._drop_files(folder, files)
            if drop is None or not all(self.is_complete(s) for s in drop.values()):
                continue
            digests = {part: self.digest(seen) for part, seen in drop.items()}
            if any(d is None for d in digests.values()):
                continue
            keys = {part: file_key(drop[part], digest) for part, digest in digests.items() if digest}
            content = hashlib.sha256("\n".join(keys[p] for p in sorted(keys)).encode()).hexdigest()
            complete.append((folder, drop, f"{folder}/|{content}", {p: k for p, k in keys.items() if p}))
        runs = {}
        if complete:
            filters = dg.RunsFilter(tags={TEMPLATE_TAG: self.template.name, FILE_KEY_TAG: [key for *_, key, _ in complete]})
            for run in instance.get_runs(filters=filters):
                runs.setdefault(run.tags[FILE_KEY_TAG], run)  # newest first
        requests = []
        for folder, drop, key, part_keys in complete:
            run = runs.get(key)
            if run is None:
                requests.append(dg.RunRequest(
                    run_key=key,
                    run_config=run_config(self.template, {"drop": folder}),
                    tags={FILE_TAG: self.inbox.where(folder), FILE_KEY_TAG: key, PART_KEYS_TAG: json.dumps(part_keys, sort_keys=True)},
                ))
            elif run.status in SETTLED and self.settle_drop(folder, list(drop.values()), run, instance):
                for seen in drop.values():
                    self.seen.pop(seen.name, None)
                    self.digests.pop(seen.name, None)
        return requests

    def settle_drop(self, folder: str, files: list[Seen], run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
        """The drop's run has ended: its files to <archive or error>/<folder name>.<run id>/
        (as a file collector's, a refusal leaves the load standing and is tried again)."""
        where = self.collector.archive if run.status == dg.DagsterRunStatus.SUCCESS else self.collector.error
        target = posixpath.join(where, f"{posixpath.basename(folder)}.{run.run_id}")
        try:
            for seen in files:
                try:
                    self.inbox.move(seen, target, posixpath.basename(seen.name), self.collector.ready_marker)
                except FileNotFoundError:
                    pass  # moved by someone else since the listing
        except (OSError, CampaignError) as exc:
            return self._unmoved(folder, run, instance, getattr(exc, "strerror", None) or str(exc))
        self.inbox.tidy(folder)
        moved = self.inbox.where(target)
        instance.add_run_tags(run.run_id, {ARCHIVE_TAG: moved})
        self.log.info(f"{self.template.name}: run {run.run_id} {run.status.value.lower()}; moved the drop {folder} to {moved}")
        return True

    def _unmoved(self, folder: str, run: dg.DagsterRun, instance: dg.DagsterInstance, reason: str) -> Any:
        self.unmoved[folder] = run.run_id
        if self.unmoved_before.get(folder) != run.run_id:
            self.log.warning(f"{self.template.name}: could not move the drop {folder} after run {run.run_id}: {reason} (tried again each tick)")
            instance.add_run_tags(run.run_id, {ARCHIVE_TAG: f"not archived: {reason}"})
        return False
