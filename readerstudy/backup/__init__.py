"""Back up one whole study to a versioned tar.gz and restore it, all or nothing, into another (or the same) database.

- :mod:`.archive`: the archive format (members, manifest, checksums, versions); pure, no Django.
- :mod:`.dump`: a study's rows and files, from one snapshot, into archive members.
- :mod:`.restore`: a verified archive's rows and files as a new study, every key remapped.
- :mod:`.actions`: ``backup_study`` / ``restore_study`` with permission checks and their audit events; the only
  entry points for views and commands.
"""
