"""The retry policy every step that launches a task carries (``compute.run_task``).

Only a transient launch failure reaches it: ``transient_failures_retried`` fails the others
at once. Set by ``FRAUD_DATABRICKS__LAUNCH_RETRIES`` and ``..._LAUNCH_RETRY_DELAY_SECONDS``.
"""

from fraud_assets.resources.compute import launch_retry_policy
from fraud_assets.settings import get_settings

LAUNCH_RETRY_POLICY = launch_retry_policy(get_settings().databricks)
