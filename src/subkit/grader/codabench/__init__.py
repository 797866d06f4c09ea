"""Codabench competition bundles: run any bundle's own programs locally, export one of ours.

Running a bundle (``subkit score-local ZIP --bundle BUNDLE``) reproduces what Codabench's
compute worker does with a code submission, from its source (codalab/codabench
``compute_worker/compute_worker.py``, ``src/apps/competitions/``). One job a module:

- ``rules.py``: the worker's rules (placeholders, what each container sees, the
  ``metadata`` it writes, the eight logs);
- ``bundle.py``: the bundle (``competition.yaml`` v2, its phases and tasks);
- ``leaderboard.py``: the scores file and the leaderboard's columns;
- ``runner.py``: the two runs in subkit's sandbox (``score_with_bundle``);
- ``export.py`` (``subkit bundle export``): a v2 bundle whose ingestion program is
  ``grader/ingestion.py`` and whose scoring program is ``grader/scoring.py`` (copied, byte
  for byte, plus the small ``score.py`` next to this file), so that Codabench and
  ``score-local`` score with the same code; ``image.py``: its docker image.
"""
