"""One module per schema revision, chained by ``down_revision``; one head at a time."""
