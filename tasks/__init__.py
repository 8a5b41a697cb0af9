"""Prefect ``@task`` wrappers: retries, timeouts, cache policy and persistence around one domain call each."""
