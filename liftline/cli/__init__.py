"""The `liftline` command line."""
