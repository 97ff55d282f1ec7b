"""The core every part uses: config (compose, check, schema), errors, file I/O, the stage runner."""
