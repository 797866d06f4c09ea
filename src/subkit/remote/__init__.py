"""HTTP clients of the platforms' APIs (requests only, no platform SDK); no printing,
no decisions about what to submit (that is ``subkit.commands.submit``).

- ``http``: retries with backoff, Retry-After, uploads with a progress bar, the server's
  own words in every failure, secrets scrubbed.
- ``codabench``: Codabench's REST API as its server code answers.
- ``kaggle``: Kaggle's public API (api.kaggle.com/v1) as the official client calls it.
"""
