"""Provider kinds (`sms/`, later `bureau/` and `court/`), their vendor clients and sandbox servers.

This layer imports nothing else of ours and no Prefect or database (DESIGN.md §1): it speaks HTTP
to vendors and hands typed results and errors (`integrations.errors`) to the tasks above.
"""
