"""HTTP routes as the Functions host builds them: host.json's `extensions.http.routePrefix` + the
binding's `route` (default: the function name), `{name}` segments as route parameters (`{*name}`
takes the rest of the path), methods from the binding (none listed: every method)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DEFAULT_ROUTE_PREFIX = "api"
ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)\}")


class RouteNotFound(Exception):
    pass


class MethodNotAllowed(Exception):
    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__(", ".join(sorted(allowed)))
        self.allowed = allowed


@dataclass(frozen=True, slots=True)
class Route:
    function_name: str
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]

    @classmethod
    def build(cls, function_name: str, *, prefix: str, route: str, methods: Iterable[str]) -> Route:
        template = "/" + "/".join(part.strip("/") for part in (prefix, route) if part.strip("/"))
        return cls(
            function_name=function_name,
            template=template,
            pattern=compile_template(template),
            methods=frozenset(m.upper() for m in methods) or ALL_METHODS,
        )

    @property
    def parameter_count(self) -> int:
        return self.pattern.groups


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    params: dict[str, str]


def compile_template(template: str) -> re.Pattern[str]:
    """Literal text matches case-insensitively (ASP.NET routing does); a trailing slash is optional."""
    parts, position = [], 0
    for match in _PARAMETER.finditer(template):
        literal = template[position : match.start()]
        catch_all, name = match.groups()
        if catch_all and match.end() != len(template):
            raise ValueError(f"route {template!r}: a catch-all parameter must come last")
        if catch_all:
            # As in ASP.NET routing, a catch-all may be empty, its slash too: `files/{*path}` serves `/files`.
            parts.append(_literal(literal.rstrip("/"), template))
            parts.append(f"(?:/(?P<{name}>.*))?")
        else:
            parts.append(_literal(literal, template))
            parts.append(f"(?P<{name}>[^/]+)")
        position = match.end()
    parts.append(_literal(template[position:].rstrip("/"), template))
    return re.compile("".join(parts) + "/?", re.IGNORECASE)


def _literal(text: str, template: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(f"route {template!r}: only {{name}} and {{*name}} parameters are supported")
    return re.escape(text)


def route_prefix(host_json: Path) -> str:
    if not host_json.is_file():
        return DEFAULT_ROUTE_PREFIX
    document = json.loads(host_json.read_text(encoding="utf-8"))
    prefix = document.get("extensions", {}).get("http", {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)
    return str(prefix)


def http_route(function_name: str, trigger: Mapping[str, Any], *, prefix: str) -> Route:
    return Route.build(
        function_name,
        prefix=prefix,
        route=str(trigger.get("route") or function_name),
        methods=trigger.get("methods") or (),
    )


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        # Literal routes win over parameterised ones, as in ASP.NET routing.
        self._routes = sorted(routes, key=lambda r: (r.parameter_count, -len(r.template)))

    def resolve(self, method: str, path: str) -> RouteMatch:
        """`path` is the raw (still percent-encoded) path, so an encoded `/` stays inside a parameter."""
        allowed: set[str] = set()
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if method.upper() in route.methods:
                params = {name: unquote(value or "") for name, value in match.groupdict().items()}
                return RouteMatch(route=route, params=params)
            allowed |= route.methods
        if allowed:
            raise MethodNotAllowed(frozenset(allowed))
        raise RouteNotFound(path)
