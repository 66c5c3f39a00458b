"""A scripted OpenAI-compatible chat-completions model on 127.0.0.1 for outside agents.

The user's message carries the plan: ``CALLS [{"tool": ..., "arguments": ...}, ...]``.
Turn n (n assistant messages so far) answers with the n-th call; after the last one
it answers with a final message. No state beyond a log of the requests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def plan_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and "CALLS " in content:
            return json.loads(content.split("CALLS ", 1)[1])
    return []


def completion(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages", [])
    calls = plan_of(messages)
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if turn < len(calls):
        call = calls[turn]
        message["tool_calls"] = [
            {
                "id": f"call_{turn}",
                "type": "function",
                "function": {"name": call["tool"], "arguments": json.dumps(call["arguments"])},
            }
        ]
        finish = "tool_calls"
    else:
        message["content"] = "Done."
        finish = "stop"
    return {
        "id": f"chatcmpl-{turn}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "stub"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class StubModel:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                stub.requests.append(body)
                data = json.dumps(completion(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
