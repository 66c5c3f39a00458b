"""Soak test of the whole system: load, faults, invariants and a performance report.

One command, on this machine, against PostgreSQL on 127.0.0.1:5432 and a Redis
server of its own (started on 127.0.0.1:6390 and stopped by this harness; the
environment variables TENURE_SOAK_DB and TENURE_SOAK_REDIS_PORT name another
database and port, so two soaks on one machine stay apart):

    .venv/bin/python bench/soak.py            # 1,000,000 proposals, 120 s of load
    .venv/bin/python bench/soak.py --quick    # 50,000 proposals, 60 s of load

1. recreates the ``tenure_soak`` database, migrates, seeds the demo
   (``seed_demo --history 20``) and bulk-loads N proposals with decisions (COPY);
2. starts gunicorn and two Celery workers as subprocesses (own process groups,
   logs under bench/results/soak-<stamp>/);
3. for a fixed time: API ingest (single and batch), 20 reviewers over HTTP with
   real sessions and CSRF (queue page, decide-and-next under htmx, counts),
   dashboards polled, and a floor view (one row by pk, a trivial template);
4. injects faults (unless ``--no-faults``): SIGKILL a worker mid-run then restart
   it; stop Redis for 10 s; ``pg_terminate_backend`` the web's and workers'
   connections; pause a workflow over HTTP as ops, then resume it;
5. checks the invariants (nothing lost, no double execution, no double decision,
   no claim held forever, no execution started while paused, 5xx only while a
   dependency is down), measures queries per request in-process, scans the logs
   for the demo's PII, and writes bench/results/soak-<stamp>.json and
   docs/PERFORMANCE.md.

Every loop is bounded in count and time; everything started is stopped in a
``finally`` (process groups), also on Ctrl-C. Only 127.0.0.1 is contacted.

The modules, in the order a run uses them:

``config``      where things live (database, Redis port, queue) and the run's source copy
``processes``   child processes by process group, the source snapshot, our own Redis,
                the environment every process gets, Django inside the harness
``db``          the checker's own PostgreSQL connection (plain SQL, no ORM)
``dataset``     reviewers, tokens and the bulk load (COPY)
``load``        the load generators: reviewers, pollers, API ingest, and what they record
``faults``      the fault schedule and each fault, and what the report says about it
``stats``       percentiles, client- and server-side latency
``queries``     queries per request, counted in-process after the load
``invariants``  what must hold after the run, and the verdict
``pii``         the scan of every log for the demo's emails and card numbers
``report``      the Markdown written to docs/PERFORMANCE.md
``run``         one run, phase by phase
``cli``         the command line (``bench/soak.py`` calls ``cli.main``)
"""
