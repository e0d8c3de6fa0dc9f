"""Test package (a regular package, so that a stray site-packages `tests` cannot shadow it)."""
