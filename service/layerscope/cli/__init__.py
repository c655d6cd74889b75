"""The `layerscope` command line: serve, audit, runs, compare. It may import both the client and the service."""
