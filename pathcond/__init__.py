"""pathcond."""
