"""Entry points: the `arrears` CLI, serve/deploy, prefect.yaml and schedules. Nothing imports this."""
