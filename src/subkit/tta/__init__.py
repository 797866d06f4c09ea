"""Test-time augmentation tuning (`subkit tta tune`): the child-side wrapper that returns
every candidate view's probabilities (``child_views``), the search over subsets and merges
from kept probabilities (``search``), and the model.py settings (``settings``)."""
