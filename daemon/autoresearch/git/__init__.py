"""git: the one adapter of the git CLI, the daemon's worktree, the session branch."""
