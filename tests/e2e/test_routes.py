"""Route templates and matching, as the Functions host routes HTTP triggers."""

from __future__ import annotations

from pathlib import Path

import pytest

from devhost.azurite import REPO_ROOT
from devhost.routes import (
    ALL_METHODS,
    MethodNotAllowed,
    Route,
    RouteNotFound,
    Router,
    http_route,
    route_prefix,
)


def _router(*routes: tuple[str, str, list[str]]) -> Router:
    return Router(Route.build(name, prefix="api", route=route, methods=m) for name, route, m in routes)


def test_given_the_repo_host_json_then_the_route_prefix_is_empty_and_routes_carry_api() -> None:
    # Empty: the Logs Ingestion API's /dataCollectionRules/... route has no /api prefix.
    assert route_prefix(REPO_ROOT / "host.json") == ""


def test_given_no_host_json_then_the_prefix_defaults_to_api(tmp_path: Path) -> None:
    assert route_prefix(tmp_path / "host.json") == "api"


def test_given_the_ingest_binding_when_resolving_post_api_logs_then_it_matches() -> None:
    trigger = {"type": "httpTrigger", "name": "req", "methods": ["post"], "route": "logs"}
    router = Router([http_route("ingest_http", trigger, prefix="api")])

    match = router.resolve("POST", "/api/logs")

    assert match.route.function_name == "ingest_http"
    assert match.route.template == "/api/logs"
    assert match.params == {}


def test_given_a_literal_route_then_case_and_a_trailing_slash_do_not_matter() -> None:
    router = _router(("f", "logs", ["post"]))

    assert router.resolve("post", "/API/Logs/").route.function_name == "f"


def test_given_no_route_then_the_function_name_is_the_route_and_every_method_is_allowed() -> None:
    route = http_route("status", {"type": "httpTrigger", "name": "req"}, prefix="api")

    assert route.template == "/api/status"
    assert route.methods == ALL_METHODS


def test_given_an_empty_prefix_then_routes_start_at_the_root() -> None:
    route = Route.build("f", prefix="", route="/health/", methods=["get"])

    assert route.template == "/health"
    assert Router([route]).resolve("GET", "/health").route is route


def test_given_a_parameter_when_resolving_then_its_value_is_percent_decoded() -> None:
    router = _router(("items", "items/{id}/parts/{part}", ["get"]))

    match = router.resolve("GET", "/api/items/a%20b/parts/7")

    assert match.params == {"id": "a b", "part": "7"}


def test_given_an_encoded_slash_then_it_stays_inside_one_parameter() -> None:
    router = _router(("items", "items/{id}", ["get"]))

    assert router.resolve("GET", "/api/items/x%2Fy").params == {"id": "x/y"}
    with pytest.raises(RouteNotFound):
        router.resolve("GET", "/api/items/x/y")


def test_given_a_catch_all_parameter_then_it_takes_the_rest_of_the_path() -> None:
    router = _router(("files", "files/{*path}", ["get"]))

    assert router.resolve("GET", "/api/files/a/b/c.txt").params == {"path": "a/b/c.txt"}


def test_given_a_catch_all_parameter_then_it_may_be_empty_with_or_without_its_slash() -> None:
    router = _router(("files", "files/{*path}", ["get"]))

    assert router.resolve("GET", "/api/files").params == {"path": ""}
    assert router.resolve("GET", "/api/files/").params == {"path": ""}


def test_given_a_literal_and_a_parameter_route_then_the_literal_wins() -> None:
    router = _router(("by_id", "items/{id}", ["get"]), ("new_item", "items/new", ["get"]))

    assert router.resolve("GET", "/api/items/new").route.function_name == "new_item"
    assert router.resolve("GET", "/api/items/42").route.function_name == "by_id"


def test_given_a_known_path_when_the_method_is_not_bound_then_method_not_allowed_lists_allowed() -> None:
    router = _router(("read", "items", ["get"]), ("write", "items", ["post", "put"]))

    with pytest.raises(MethodNotAllowed) as raised:
        router.resolve("DELETE", "/api/items")

    assert raised.value.allowed == {"GET", "POST", "PUT"}


def test_given_the_same_path_with_two_functions_then_the_method_picks_the_function() -> None:
    router = _router(("read", "items", ["get"]), ("write", "items", ["post"]))

    assert router.resolve("POST", "/api/items").route.function_name == "write"


def test_given_an_unknown_path_then_route_not_found() -> None:
    router = _router(("f", "logs", ["post"]))

    for path in ("/api/other", "/logs", "/api/logs/extra", "/api/logsx"):
        with pytest.raises(RouteNotFound):
            router.resolve("POST", path)


@pytest.mark.parametrize("route", ["items/{id:int}", "items/{id?}", "files/{*path}/more", "a/{"])
def test_given_an_unsupported_template_then_building_it_fails(route: str) -> None:
    with pytest.raises(ValueError, match="route"):
        Route.build("f", prefix="api", route=route, methods=[])
