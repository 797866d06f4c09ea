"""Terminal and HTML reports of local runs."""
