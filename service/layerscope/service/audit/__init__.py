"""The batch audit use case: which files one audit (or one shard of it) covers, each file loaded, diagnosed and
described in an audit process where a crash costs that one model, and the `layerscope.audit/v1` document.

The command line (`layerscope audit`), a cluster runner and the audit through a server all call this code;
`cli/audit/` keeps only argument parsing, the progress bar and the rendering (table, SARIF, HTML).

- `batch`: the files (folders expanded), the arrays to run them on, the error that stops the whole batch.
- `shards`: one shard of the sorted files, by count or balanced by archive size, and the stamp `merge` checks.
- `model_audit`: one file -> one entry (load, diagnose, describe), shared by every way of auditing.
- `runner`: the audit processes (`--jobs`, `--model-timeout`, --custom-objects imported in them).
- `report`: the document, merging shard reports, the exit status.
"""
