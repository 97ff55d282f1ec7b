"""The MLflow Model Registry: registration (the one owner of new versions and aliases), the
registry lock, champion/challenger aliases and the promotion gate."""
