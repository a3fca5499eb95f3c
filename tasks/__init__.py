"""Prefect tasks: the only code that joins the database, the rules and the providers (DESIGN §1).

Every side effect is a task, so it is observable, retryable and named. No task runs per account
in the daily cycle: shards and batches are the unit (PREFECT.md).
"""
