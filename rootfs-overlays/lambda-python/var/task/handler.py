"""lambda-python's function: a plain Lambda handler, run unchanged by AWS's published Runtime
Interface Client (`python3.11 -m awslambdaric handler.handler`, the wheel pinned in
profiles/lambda-python.requirements.txt), which talks to the init's Runtime API.

Events (JSON objects):
  {"name": N}        -> {"message": "Hello, N!", "request_id": ..., "function_name": ...,
                         "memory_limit_in_mb": ..., "remaining_ms": ...}  (N defaults to "world")
  {"fail": true}     -> the handler raises HandlerFailed: a function error (X-Amz-Function-Error)
                         whose errorType is "HandlerFailed" and errorMessage "asked to fail"
  {"sleep_ms": N}    -> sleeps N ms first (past the deadline: Lambda's timeout)
"""
import time


class HandlerFailed(Exception):
    pass


def handler(event, context):
    if not isinstance(event, dict):
        event = {}
    sleep_ms = event.get("sleep_ms")
    if isinstance(sleep_ms, int) and sleep_ms > 0:
        time.sleep(sleep_ms / 1000)
    if event.get("fail"):
        raise HandlerFailed("asked to fail")
    return {
        "message": "Hello, %s!" % event.get("name", "world"),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
