"""Clients of the platforms' APIs (requests only, no platform SDK).

- ``http``: retries with backoff, Retry-After, upload with a progress bar, and the
  server's own error text in every failure.
- ``codabench``: log in, pick the phase, upload the zip, create the submission, wait.
- ``kaggle``: StartSubmissionUpload -> PUT -> CreateSubmission, with hints for the usual
  400/403/404 causes.
"""
