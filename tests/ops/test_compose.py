"""docker-compose.yml, checked without Docker (this machine's docker has no compose
plugin): the services, their health checks and start order, and that the
environment it sets is what the settings read."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # merge keys resolved
SERVICES = COMPOSE["services"]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def test_the_production_shape_is_all_there():
    assert {"db", "redis", "migrate", "web", "worker", "beat"} <= set(SERVICES)
    assert "gunicorn" in SERVICES["web"]["command"]
    assert "console.wsgi:application" in SERVICES["web"]["command"]
    assert SERVICES["worker"]["command"][:4] == ["celery", "-A", "console", "worker"]
    assert SERVICES["beat"]["command"][:4] == ["celery", "-A", "console", "beat"]
    migrate = " ".join(SERVICES["migrate"]["command"])
    assert "manage.py migrate --noinput && python manage.py db_app_role" in migrate
    assert "pgdata" in COMPOSE["volumes"]


def test_every_long_running_service_has_a_health_check():
    for name, service in SERVICES.items():
        if name == "migrate":  # runs once and exits
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    web_check = " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert f"localhost:8000{reverse('healthz')}" in web_check


def test_services_start_in_order_on_what_they_need():
    for name, service in SERVICES.items():
        for needed, spec in (service.get("depends_on") or {}).items():
            assert needed in SERVICES, f"{name} depends on unknown {needed}"
            assert spec["condition"] in CONDITIONS, (name, spec)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[needed], f"{needed} cannot become healthy"
    for name in ("web", "worker", "beat"):
        needs = SERVICES[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["db"]["condition"] == "service_healthy", name


def test_the_environment_is_what_the_settings_read():
    settings_source = (ROOT / "console" / "settings.py").read_text()
    for name in ("web", "worker", "beat", "migrate"):
        environment = SERVICES[name]["environment"]
        for variable in environment:
            assert re.search(rf"[\"']{variable}[\"']", settings_source), (
                f"{variable} is set for {name} but console/settings.py never reads it"
            )
        assert environment["DEBUG"] == "0"
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")  # refuses to start unset
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["REDIS_URL"].startswith("redis://redis:")


def test_the_app_runs_as_a_role_that_owns_no_table_and_migrations_as_the_owner():
    for name in ("web", "worker", "beat"):
        assert SERVICES[name]["environment"]["DATABASE_URL"].startswith("postgres://tenure_app:")
    assert SERVICES["migrate"]["environment"]["DATABASE_URL"].startswith("postgres://tenure:")


def test_audit_keys_and_checkpoints_live_outside_the_database():
    environment = SERVICES["web"]["environment"]
    assert "TENURE_AUDIT_KEYS" in environment
    assert environment["TENURE_AUDIT_CHECKPOINTS"].startswith("${TENURE_AUDIT_CHECKPOINTS:-dir:")
    assert any("checkpoints" in volume for volume in SERVICES["web"]["volumes"])
    assert "volumes" not in SERVICES["db"] or not any(
        "checkpoints" in volume for volume in SERVICES["db"]["volumes"]
    )


def test_agent_runs_have_a_threaded_worker_of_their_own():
    queue = SERVICES["web"]["environment"]["TENURE_RUNS_QUEUE"]
    for name in ("web", "worker", "beat", "runs"):  # every producer routes runs alike
        assert SERVICES[name]["environment"]["TENURE_RUNS_QUEUE"] == queue, name
    command = SERVICES["runs"]["command"]
    assert command[:4] == ["celery", "-A", "console", "worker"]
    assert "--pool=threads" in command
    assert command[command.index("-Q") + 1] == queue
    assert "-Q" not in SERVICES["worker"]["command"]  # the default queue: everything else
    # Threads give their connection back while the model thinks: a cap per process.
    assert SERVICES["runs"]["environment"]["TENURE_RUN_DB_CONNECTIONS"].startswith("${")


def test_pgbouncer_is_an_optional_service_in_transaction_mode():
    bouncer = SERVICES["pgbouncer"]
    assert bouncer["profiles"] == ["pgbouncer"]  # not started unless asked for
    assert bouncer["environment"]["POOL_MODE"] == "transaction"
    assert bouncer["environment"]["DB_HOST"] == "db"
    assert "healthcheck" in bouncer
