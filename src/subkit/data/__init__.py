"""Data: npz io, synthetic blood-cell-like images, and the honest-test-set tools."""
