"""`arrears migrate`: the schema upgrade, run when the operator chooses rather than by whichever
command opens the database first."""

from deployments.cli._common import (
    DatabaseOption,
    app,
    console,
    database_engine,
    database_errors,
    use_database,
)


@app.command()
def migrate(database: DatabaseOption = None) -> None:
    """Upgrade the database's schema to this arrears (a new database is created).

    `arrears cycle`, `dispatch`, `import`, `serve`, `demo` and `bureau furnish` upgrade it on open
    too; the other commands (reports, lists, a person's one-row changes) refuse a database behind
    this arrears, exit 2, naming this command: an upgrade may rewrite large tables under a lock
    (on PostgreSQL, minutes for a large book), which nobody expects of `arrears report`.

    Exit codes: 0 done, or nothing to do; 2 a database a newer arrears upgraded; 1 the database
    cannot be reached, or the upgrade failed (rolled back: the schema is as it was).
    """
    from arrears.storage import migrate as upgrade
    from arrears.storage import schema_revisions

    url = use_database(database)
    engine = database_engine(url, create=True)
    with database_errors(url):
        before, heads = schema_revisions(engine)
        upgrade(engine)
    at = ", ".join(sorted(heads))
    if before == heads:
        console.print(f"the schema is at revision {at} already: nothing to do")
    else:
        console.print(f"the schema is upgraded from revision {', '.join(sorted(before)) or '(none)'} to {at}")
