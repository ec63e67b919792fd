"""Checksums of a saved checkpoint step, so damage on disk is found before use.

Orbax does not check that the bytes it reads are the bytes it wrote: a
flipped byte in an array file can restore as different numbers in silence.
Once a step has been saved completely, the trainer writes STEP/checksums.json
listing every file of the step with its size and SHA-256 (streamed, about
0.3 s per 100 MB here). A step is trusted only when that list exists and
every file in it is present with its size and digest. Orbax renames a step
into place once all its files are written, and the list follows, so a step
without the list is an unfinished save (the process stopped in between) or
was written before checksums were kept; models/store.py decides how such a
step is read.
"""

import hashlib
import json
import os

MANIFEST = 'checksums.json'
# Why a step has no MANIFEST when this version wrote it.
UNFINISHED = ('an unfinished save, stopped after orbax had written the step '
              'and before its checksums')


def _digest(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


def _files(step_dir: str):
  """Paths of the step's files relative to `step_dir`, sorted, list excluded."""
  found = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      relative = os.path.relpath(os.path.join(root, name), step_dir)
      if relative != MANIFEST and not relative.startswith(MANIFEST + '.'):
        found.append(relative)
  return sorted(found)


def write_manifest(step_dir: str) -> None:
  """Records size and SHA-256 of every file of a completely saved step.

  Written under a temporary name, flushed to disk and renamed, so the list
  either exists whole or not at all.
  """
  entries = {}
  for relative in _files(step_dir):
    path = os.path.join(step_dir, relative)
    entries[relative] = {'bytes': os.path.getsize(path),
                         'sha256': _digest(path)}
  staging = os.path.join(step_dir, MANIFEST + '.partial')
  with open(staging, 'w') as f:
    json.dump({'files': entries}, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(staging, os.path.join(step_dir, MANIFEST))


def _read_manifest(step_dir: str):
  """(entries, None) or (None, why the list cannot be used)."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.isfile(path):
    return None, f'no {MANIFEST}: {UNFINISHED}'
  try:
    with open(path) as f:
      entries = json.load(f)['files']
    if not isinstance(entries, dict) or not entries:
      raise ValueError('empty file list')
    for entry in entries.values():
      int(entry['bytes']), str(entry['sha256'])  # pylint: disable=expression-not-assigned
  except (OSError, ValueError, KeyError, TypeError) as err:
    return None, f'{MANIFEST} is unreadable ({err})'
  return entries, None


def find_damage(step_dir: str) -> str | None:
  """Why the step in `step_dir` cannot be trusted, or None if it is intact.

  Cheap checks (presence, sizes) run over all files before any hashing.
  """
  if not os.path.isdir(step_dir):
    return 'the step directory is missing'
  entries, why = _read_manifest(step_dir)
  if why:
    return why
  for relative, entry in entries.items():
    path = os.path.join(step_dir, relative)
    if not os.path.isfile(path):
      return f'{relative} is missing'
    size = os.path.getsize(path)
    if size != entry['bytes']:
      return (f'{relative} has {size} bytes, {entry["bytes"]} were written'
              f'{" (truncated)" if size < entry["bytes"] else ""}')
  for relative, entry in entries.items():
    if _digest(os.path.join(step_dir, relative)) != entry['sha256']:
      return f'{relative} does not match its checksum (bytes changed on disk)'
  return None
