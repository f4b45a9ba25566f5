"""An example chaos plugin: the `registry-offline` fault type and the `resolves:` probe."""
