"""Drive a dashboard's callbacks over HTTP as the browser does (for tests and ``benchmarks/bench_dashboard.py``).

:class:`CallbackClient` keeps the value of every component property it was given or that a callback
returned, builds the ``/_dash-update-component`` request body that Dash's renderer would send for a
callback (inputs and state, pattern-matching ``ALL`` groups included), posts it through Flask's test
client and records the time and the bytes both ways. Nothing here runs in the served app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dash

_PATCH = "__dash_patch_update"


@dataclass(frozen=True)
class CallResult:
    """One callback call: server time (ms, request to response), bytes sent and received, the response."""

    output: str
    ms: float
    request_bytes: int
    response_bytes: int
    response: dict[str, Any]

    @property
    def bytes(self) -> int:
        return self.request_bytes + self.response_bytes

    def value(self, component_id: str, prop: str) -> Any:
        return self.response.get("response", {}).get(component_id, {}).get(prop)


def _pattern(spec_id: str) -> dict[str, Any] | None:
    return json.loads(spec_id) if spec_id.startswith("{") else None


class CallbackClient:
    """Calls the callbacks of ``app`` through its Flask test client."""

    def __init__(self, app: dash.Dash) -> None:
        self.app = app
        self.client = app.server.test_client()
        self.values: dict[tuple[str, str], Any] = {}
        self.patterns: dict[tuple[str, str], list[tuple[dict[str, Any], Any]]] = {}

    def set(self, component_id: str, prop: str, value: Any) -> None:
        self.values[(component_id, prop)] = value

    def set_all(self, pattern_type: str, prop: str, items: Sequence[tuple[Mapping[str, Any], Any]]) -> None:
        """The components of a pattern-matching type: (their id, the value of ``prop``)."""
        self.patterns[(pattern_type, prop)] = [(dict(i), v) for i, v in items]

    def _entry(self, spec: Mapping[str, str]) -> Any:
        pattern = _pattern(spec["id"])
        prop = spec["property"]
        if pattern is None:
            return {"id": spec["id"], "property": prop, "value": self.values.get((spec["id"], prop))}
        ptype = str(pattern["type"])
        ids = [i for i, _ in self.patterns.get((ptype, "value"), [])]
        lookup = {json.dumps(i, sort_keys=True): v for i, v in self.patterns.get((ptype, prop), [])}
        return [{"id": i, "property": prop, "value": i if prop == "id" else lookup.get(json.dumps(i, sort_keys=True))}
                for i in ids]

    def find(self, *outputs: str, trigger: str | None = None) -> str:
        """The callback_map key whose outputs are exactly ``outputs`` ("id.prop", in order) and, when
        given, whose inputs include ``trigger`` ("id.prop")."""
        for key, cb in self.app.callback_map.items():
            if trigger is not None and trigger not in {f"{i['id']}.{i['property']}" for i in cb["inputs"]}:
                continue
            out = cb["output"]
            names = [f"{o.component_id}.{o.component_property.split('@')[0]}"
                     for o in (out if isinstance(out, list) else [out])]
            if names == list(outputs):
                return key
        raise KeyError(f"no callback with outputs {outputs}")

    def triggered_by(self, prop: str) -> list[str]:
        """Keys of every server callback with ``prop`` ("id.prop"; a pattern id as Dash writes it) as an
        Input: what the browser calls when that property changes."""
        return [k for k, cb in self.app.callback_map.items()
                if prop in {f"{i['id']}.{i['property']}" for i in cb["inputs"]} and "callback" in cb
                and not cb.get("background")]

    def call(self, key: str, changed: Sequence[str]) -> CallResult:
        """Call the callback ``key`` as if the properties ``changed`` ("id.prop") had just changed."""
        cb = self.app.callback_map[key]
        out = cb["output"]
        specs = out if isinstance(out, list) else [out]
        outputs: list[Any] = []
        for o in specs:
            prop = o.component_property.split("@")[0]
            if isinstance(o.component_id, dict):  # pattern-matching ALL: one entry per matching component
                ptype = str(o.component_id["type"])
                outputs.append([{"id": i, "property": prop} for i, _ in self.patterns.get((ptype, "value"), [])])
            else:
                outputs.append({"id": str(o.component_id), "property": prop})
        body = {"output": key, "outputs": outputs if isinstance(out, list) else outputs[0],
                "inputs": [self._entry(s) for s in cb["inputs"]], "state": [self._entry(s) for s in cb["state"]],
                "changedPropIds": list(changed)}
        data = json.dumps(body, separators=(",", ":")).encode()
        t = time.perf_counter()
        r = self.client.post("/_dash-update-component", data=data, content_type="application/json")
        ms = (time.perf_counter() - t) * 1000
        if r.status_code == 204:
            return CallResult(key, ms, len(data), 0, {})
        if r.status_code != 200:
            raise RuntimeError(f"{key}: HTTP {r.status_code}: {r.data[:500]!r}")
        response = json.loads(r.data)
        for cid, props in response.get("response", {}).items():
            for prop, value in props.items():
                if not (isinstance(value, dict) and value.get(_PATCH)):
                    self.values[(cid, prop)] = value
        return CallResult(key, ms, len(data), len(r.data), response)
