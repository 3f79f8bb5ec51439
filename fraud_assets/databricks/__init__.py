"""Databricks launch helpers with no Dagster imports.

- ``credentials``: host plus token or OAuth M2M, checked at launch; the WorkspaceClient.
- ``http``: 500/502/504 retries under the SDK, which retries 429/503 itself.
- ``launch``: the wheel task, job cluster, serverless environment, step-job lookup.
- ``runs``: follow a run to its end: deadline, cancellation, failure details.
- ``redaction``: keep secrets out of logs and error text.
- ``pipes``: the task side of Pipes on DBFS and UC Volumes through the FUSE mounts.
"""
