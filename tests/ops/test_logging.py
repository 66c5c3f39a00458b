"""Request ids on responses and on JSON log lines; run ids from Celery tasks."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import RequestFactory

from console.ops import logging as ops_logging
from console.ops.request_id import HEADER, RequestIdMiddleware


@pytest.fixture(autouse=True)
def _restore_loggers():
    names = ("", "tenure.request", "tenure.test.json")
    saved = {
        n: (
            logging.getLogger(n).handlers[:],
            logging.getLogger(n).propagate,
            logging.getLogger(n).level,
        )
        for n in names
    }
    yield
    for n, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ops_logging.TenureJsonFormatter())
    handler.addFilter(ops_logging.ContextFilter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def test_a_json_log_line_parses_and_carries_the_bound_ids():
    logger, stream = _json_logger("tenure.test.json")
    with ops_logging.log_context(request_id="req-123", run_id=42):
        logger.info("step done", extra={"tool": "lookup_order"})
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "step done"
    assert first["level"] == "INFO"
    assert first["logger"] == "tenure.test.json"
    assert (first["request_id"], first["run_id"], first["tool"]) == ("req-123", 42, "lookup_order")
    assert first["timestamp"].endswith("+00:00")
    assert second["request_id"] is None


def test_middleware_sets_the_header_and_logs_with_the_id():
    logger, stream = _json_logger("tenure.request")
    seen = {}

    def view(request):
        from django.http import HttpResponse

        seen["id"] = ops_logging.context_get("request_id")
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/somewhere"))
    request_id = response[HEADER]
    assert len(request_id) == 32
    assert seen["id"] == request_id
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["request_id"], line["status"], line["path"]) == (request_id, 200, "/somewhere")
    assert ops_logging.context_get("request_id") is None  # unbound after the request


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("abc-123-def-456", True), ("bad id with spaces", False), ("x" * 300, False)],
)
def test_a_well_formed_incoming_request_id_is_kept(incoming, kept):
    from django.http import HttpResponse

    request = RequestFactory().get("/", HTTP_X_REQUEST_ID=incoming)
    response = RequestIdMiddleware(lambda r: HttpResponse())(request)
    assert (response[HEADER] == incoming) is kept


@pytest.mark.django_db
def test_every_response_carries_a_request_id_when_the_middleware_is_installed(client, settings):
    settings.MIDDLEWARE = ["console.ops.request_id.RequestIdMiddleware", *settings.MIDDLEWARE]
    response = client.get("/healthz")
    assert response[HEADER]
    api = client.get("/api/v1/proposals")
    assert api.status_code == 401
    assert api[HEADER]


def test_celery_task_signals_bind_the_run_id():
    ops_logging._task_prerun(task_id="t-1", kwargs={"run_id": 7})
    assert ops_logging.context_get("run_id") == 7
    assert ops_logging.context_get("task_id") == "t-1"
    ops_logging._task_postrun(task_id="t-1")
    assert ops_logging.context_get("run_id") is None


def test_celery_task_signals_bind_positional_ids_of_known_tasks():
    from agents.tasks import run_agent

    ops_logging._task_prerun(task_id="t-2", task=run_agent, args=(11,), kwargs={})
    assert ops_logging.context_get("work_item_id") == 11
    ops_logging._task_postrun(task_id="t-2")
    assert ops_logging.context_get("work_item_id") is None


def test_build_logging_is_a_valid_dict_config():
    import logging.config

    config = ops_logging.build_logging(level="INFO", json=True)
    logging.config.dictConfig(config)
    assert config["handlers"]["console"]["formatter"] == "json"
    plain = ops_logging.build_logging(level="DEBUG", json=False)
    assert plain["handlers"]["console"]["formatter"] == "plain"
