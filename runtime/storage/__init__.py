"""Storage: the typed interface every backend implements, and the backends behind it."""
