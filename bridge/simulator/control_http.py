"""The control API over HTTP (JSON), for the demo and benchmarks that run the simulator out of process.

Every operation mirrors a :class:`~bridge.simulator.control.SimulatorControl` method. Sessions are named in the
JSON body by exactly one of ``token``, ``session_id``, ``attribute`` (``{"key": k, "value": v}``),
``first_text`` or ``index`` (optionally with ``deployment_id``). Errors: 400 for a bad body, 404 for no
such session, 504 when a wait times out. See ``docs/simulator.md`` for the table of routes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.simulator.config import DisconnectOvertake
from bridge.simulator.control import SimulatorControl
from bridge.simulator.session import Session

__all__ = ["add_routes"]

_Op = Callable[[SimulatorControl, dict[str, Any]], Awaitable[Any]]


class _BadRequest(Exception):
    pass


class _NoSession(Exception):
    pass


def _lookup(sim: SimulatorControl, body: dict[str, Any]) -> Session:
    attribute = body.get("attribute")
    if isinstance(attribute, dict):
        attribute = (str(attribute.get("key")), str(attribute.get("value")))
    elif isinstance(attribute, list) and len(attribute) == 2:
        attribute = (str(attribute[0]), str(attribute[1]))
    elif attribute is not None:
        raise _BadRequest("attribute must be {key, value}")
    token, session_id, first_text, index = (body.get(k) for k in ("token", "session_id", "first_text", "index"))
    if sum(v is not None for v in (token, session_id, attribute, first_text, index)) != 1:
        raise _BadRequest("name the session by exactly one of token, session_id, attribute, first_text, index")
    if index is not None and not isinstance(index, int):
        raise _BadRequest("index must be an integer")
    session = sim.find_session(
        token=None if token is None else str(token),
        session_id=None if session_id is None else str(session_id),
        attribute=attribute,
        first_text=None if first_text is None else str(first_text),
        index=index,
        deployment_id=body.get("deployment_id"),
    )
    if session is None and token is not None and body.get("deployment_id") is None:
        session = sim.engine.registry.latest_for_token(str(token))  # e.g. a cleared session, still readable
    if session is None:
        raise _NoSession
    return session


def _timeout(body: dict[str, Any]) -> float:
    value = body.get("timeout_s", 30.0)
    if not isinstance(value, int | float) or value <= 0:
        raise _BadRequest("timeout_s must be a positive number")
    return float(value)


async def _sessions(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"sessions": [s.info() for s in sim.sessions()]}


async def _session(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return _lookup(sim, body).info()


async def _wait_session(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    def found() -> Session | None:
        try:
            return _lookup(sim, body)
        except _NoSession:
            return None

    found()  # a malformed lookup fails now with 400 rather than after the timeout
    session = await sim.wait_for(found, timeout_s=_timeout(body))
    return session.info()


async def _received(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    count = body.get("count")
    if count is None:
        session = _lookup(sim, body)
        items = session.received
    else:
        if not isinstance(count, int):
            raise _BadRequest("count must be an integer")

        def ready() -> Session | None:
            try:
                s = _lookup(sim, body)
            except _NoSession:
                return None
            return s if len(s.received) >= count else None

        session = await sim.wait_for(ready, timeout_s=_timeout(body))
        items = session.received
    return {"session": session.info(), "received": [r.as_json() for r in items]}


async def _history(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"history": sim.history(_lookup(sim, body))}


async def _agent_say(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    message_id = await sim.agent_say(
        _lookup(sim, body),
        body.get("text"),
        content=body.get("content"),
        originating_entity=body.get("originating_entity", "Human"),
        nickname=body.get("nickname"),
        image=body.get("image"),
        metadata=body.get("metadata"),
    )
    return {"id": message_id}


async def _agent_typing(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"id": await sim.agent_typing(_lookup(sim, body), duration_ms=int(body.get("duration_ms", 5000)))}


async def _disconnect(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"id": await sim.disconnect(_lookup(sim, body), read_only=body.get("read_only"))}


_OVERTAKES: dict[object, DisconnectOvertake | None] = {None: None, "off": "off", "late": "late", "lost": "lost"}


async def _agent_say_and_disconnect(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    overtake = body.get("overtake")
    if overtake not in _OVERTAKES:
        raise _BadRequest("overtake must be one of off, late, lost")
    message_id, disconnect_id = await sim.agent_say_and_disconnect(
        _lookup(sim, body),
        body.get("text"),
        content=body.get("content"),
        originating_entity=body.get("originating_entity", "Human"),
        nickname=body.get("nickname"),
        read_only=body.get("read_only"),
        overtake=_OVERTAKES[overtake],
    )
    return {"id": message_id, "disconnect_id": disconnect_id}


async def _expire(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    await sim.expire(_lookup(sim, body))
    return {}


async def _clear(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    await sim.clear(_lookup(sim, body))
    return {}


async def _drop(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"dropped": await sim.drop_connections(_lookup(sim, body), code=int(body.get("code", 1006)))}


async def _add_history(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    message_id = await sim.add_history(
        _lookup(sim, body),
        body.get("text"),
        content=body.get("content"),
        originating_entity=body.get("originating_entity", "Human"),
        nickname=body.get("nickname"),
    )
    return {"id": message_id}


_FAULT_KEYS = ("delay_s", "reorder_window", "duplicate_next", "fail_next", "fail_actions", "classes")


async def _faults(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    named = any(k in body for k in ("token", "session_id", "attribute", "first_text", "index"))
    ref = _lookup(sim, body) if named else None
    plan = await sim.set_faults(ref, **{k: body[k] for k in _FAULT_KEYS if k in body})
    return {
        "delay_s": plan.delay_s,
        "reorder_window": plan.reorder_window,
        "duplicate_next": plan.duplicate_next,
        "fail_next": plan.fail_next,
        "fail_actions": sorted(plan.fail_actions) if plan.fail_actions is not None else None,
        "classes": sorted(plan.classes) if plan.classes is not None else None,
    }


async def _logout(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"logged_out": await sim.logout(_lookup(sim, body))}


async def _expire_jwts(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    await sim.expire_jwts(_lookup(sim, body))
    return {}


async def _refuse_auth_code(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    code = body.get("code")
    if not isinstance(code, str) or not code:
        raise _BadRequest("code must be a non-empty string")
    await sim.refuse_auth_code(code)
    return {}


async def _fail_next_refresh(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        raise _BadRequest("count must be an integer")
    await sim.fail_next_refresh(count)
    return {}


async def _health(sim: SimulatorControl, body: dict[str, Any]) -> Any:
    return {"ok": True, "port": sim.port, "sessions": len(sim.sessions())}


_POST: dict[str, _Op] = {
    "session": _session,
    "wait_session": _wait_session,
    "received": _received,
    "history": _history,
    "agent_say": _agent_say,
    "agent_typing": _agent_typing,
    "disconnect": _disconnect,
    "agent_say_and_disconnect": _agent_say_and_disconnect,
    "expire": _expire,
    "clear": _clear,
    "drop_connections": _drop,
    "add_history": _add_history,
    "faults": _faults,
    "logout": _logout,
    "expire_jwts": _expire_jwts,
    "refuse_auth_code": _refuse_auth_code,
    "fail_next_refresh": _fail_next_refresh,
}
_GET: dict[str, _Op] = {"sessions": _sessions, "health": _health}


def _handler(sim: SimulatorControl, op: _Op, *, has_body: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            body: Any = {}
            if has_body and request.can_read_body:
                body = json.loads(await request.read() or b"{}")
            result = await op(sim, body) if isinstance(body, dict) else None
            if result is None:
                return web.json_response({"error": "the body must be a JSON object"}, status=400)
        except (_BadRequest, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc) or "bad request"}, status=400)
        except (_NoSession, KeyError):
            return web.json_response({"error": "no such session"}, status=404)
        except TimeoutError:
            return web.json_response({"error": "timed out"}, status=504)
        return web.json_response(result)

    return handle


def add_routes(app: web.Application, sim: SimulatorControl) -> None:
    """Register ``GET /control/{sessions,health}`` and ``POST /control/<operation>``."""
    for name, op in _GET.items():
        app.router.add_get(f"/control/{name}", _handler(sim, op, has_body=False))
    for name, op in _POST.items():
        app.router.add_post(f"/control/{name}", _handler(sim, op, has_body=True))
