"""One module per command: each takes one typed options object, calls the mechanics below
it and returns what the CLI renders. Nothing here prints (progress goes through
``subkit.ui``) or imports click."""
