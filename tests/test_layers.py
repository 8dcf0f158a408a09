"""Dependencies flow one way, layer by folder: app → api → flows → services → gateways
→ governor → stores → basics → config.

Every module of the package is placed in a layer below; an import (at any depth,
lazy ones included) may reach its own layer or one below, never one above. A new
module must be placed here, so its layer is a decision, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gurugrow"

# Lowest first; each layer is folders (and a few named top-level modules). A module's layer
# is that of the longest prefix naming it; "gurugrow" itself catches new top-level modules
# in the app layer, and test_the_top_level_is_a_handful_of_modules refuses them.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # The route registry is data every layer reads, configuration's validation too.
    ("config", ("gurugrow.config", "gurugrow.routes")),
    ("basics", ("gurugrow.texts", "gurugrow.logs", "gurugrow.metrics", "gurugrow.basics")),
    ("stores", ("gurugrow.stores",)),
    # Who waits for RetailCRM's shared bucket (a store), with which priority, until when.
    ("governor", ("gurugrow.governor",)),
    ("gateways", ("gurugrow.gateways",)),
    # The process's collaborators: stores and gateways, wired once (flows take a Services).
    ("services", ("gurugrow.services",)),
    ("flows", ("gurugrow.flows",)),
    ("api", ("gurugrow.api",)),
    # What assembles or drives the layers above: the app factory, commands, stand-ins.
    ("app", ("gurugrow", "gurugrow.cli", "gurugrow.doctor", "gurugrow.sandbox")),
)
TOP_LEVEL_MODULES = {"__init__", "config", "routes", "texts", "logs", "metrics", "services",
                     "cli", "governor"}
FOLDERS = {"api", "basics", "flows", "gateways", "stores", "sandbox", "doctor"}
RANKS = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    """The layer of a ``gurugrow`` module (KeyError: the module is in no layer)."""
    best = ""
    found = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, found = prefix, name
    if found is None:
        raise KeyError(module)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, importer: str, is_package: bool,
                     roots: tuple[str, ...] = ("gurugrow",)) -> set[str]:
    """The modules of ``roots`` that ``source`` imports (``from gurugrow import x`` names
    the submodule ``gurugrow.x`` when there is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _exists(candidate) else base)
    return {m for m in found if any(m == r or m.startswith(r + ".") for r in roots)}


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def upward_imports(source: str, importer: str, is_package: bool = False) -> list[str]:
    """``importer → imported`` for each import of a layer above the importer's."""
    rank = RANKS[layer_of(importer)]
    return [f"{importer} ({layer_of(importer)}) → {m} ({layer_of(m)})"
            for m in sorted(imported_modules(source, importer, is_package))
            if RANKS[layer_of(m)] > rank]


def package_modules() -> list[tuple[str, Path]]:
    return [(module_name(p), p) for p in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_is_in_a_layer():
    unplaced = []
    for name, _ in package_modules():
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"place these modules in LAYERS of {__name__}: {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for name, path in package_modules():
        upward += upward_imports(path.read_text(encoding="utf-8"), name,
                                 path.name == "__init__.py")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_config_depends_on_nothing_of_ours():
    # Nothing but the route registry, which is its layer's data and imports nothing.
    source = (PACKAGE / "config.py").read_text(encoding="utf-8")
    assert imported_modules(source, "gurugrow.config", False) == {"gurugrow.routes"}
    routes = (PACKAGE / "routes.py").read_text(encoding="utf-8")
    assert imported_modules(routes, "gurugrow.routes", False) == set()


def test_no_module_imports_another_modules_private_names():
    private = []
    for name, path in package_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gurugrow"):
                private += [f"{name}: {node.module}.{alias.name}" for alias in node.names
                            if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_top_level_is_a_handful_of_modules():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules <= TOP_LEVEL_MODULES, (
        f"put these in a layer's folder: {sorted(modules - TOP_LEVEL_MODULES)}")
    assert packages <= FOLDERS, f"a folder in no layer: {sorted(packages - FOLDERS)}"


def test_every_redis_script_is_a_lua_file_beside_its_store():
    inline = []
    for name, path in package_modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str) and "redis.call" in node.value.value):
                inline.append(f"{name}:{node.lineno}")
    assert not inline, "Lua kept in Python strings (a .lua file in stores/ instead):\n" + (
        "\n".join(inline))


# The flows the blueprints call; the others (codes, binding, ...) are what they share.
ENDPOINT_FLOWS = {"gurugrow.flows.auth", "gurugrow.flows.orders", "gurugrow.flows.recommended"}


def test_flows_share_code_only_through_the_shared_flow_modules():
    crossing = []
    for name, path in package_modules():
        if layer_of(name) != "flows":
            continue
        imported = imported_modules(path.read_text(encoding="utf-8"), name, False)
        crossing += [f"{name} → {m}" for m in sorted(imported & ENDPOINT_FLOWS) if m != name]
    assert not crossing, "an endpoint's flow imported by another flow:\n" + "\n".join(crossing)


@pytest.mark.parametrize(("importer", "source", "expected"), [
    ("gurugrow.flows.auth", "from gurugrow.api.contract import endpoint", 1),
    ("gurugrow.flows.auth", "def f():\n    from gurugrow.api import contract", 1),
    ("gurugrow.config", "import gurugrow.flows.order_view", 1),
    ("gurugrow.stores.otp", "from gurugrow import services", 1),
    ("gurugrow.stores.otp", "from gurugrow.stores import keys", 0),
    ("gurugrow.stores.quota", "from gurugrow.gateways.errors import CrmBusy", 1),
    ("gurugrow.stores.quota", "from gurugrow import governor", 1),
    ("gurugrow.gateways.http", "from gurugrow.governor import CrmQuota", 0),
    ("gurugrow.api.auth", "from gurugrow.governor import JOURNEY", 0),
    ("gurugrow.basics.phone", "from gurugrow.stores import keys", 1),
    ("gurugrow.gateways.http", "from gurugrow.stores import quota", 0),
    ("gurugrow.gateways.http", "from ..flows import codes", 1),
    ("gurugrow.api.auth", "from gurugrow.flows import auth", 0),
])
def test_the_check_sees_upward_imports(importer, source, expected):
    assert len(upward_imports(source, importer)) == expected


# What a flow may not touch: Redis is the stores' (their methods, Services.batch()).
REDIS_IMPORTS = ("redis", "gurugrow.stores.keys", "gurugrow.stores.client.redis_guard",
                 "gurugrow.stores.client.written", "gurugrow.stores.cache",
                 "gurugrow.stores.server")
# Attributes that hand out the client or the server: the old Services.redis, the app's
# RedisServer (svc.storage) and its client.
REDIS_ATTRIBUTES = ("redis", "storage")


def redis_reaches(source: str, importer: str) -> list[str]:
    """Where ``source`` (a flow) imports redis or the key builders, reads a ``.redis``
    client or the ``.storage`` server, or builds a ``WriteBatch`` of its own."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Attribute) and node.attr in REDIS_ATTRIBUTES:
            found.append(f"{importer}:{node.lineno} reads .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "WriteBatch"):
            found.append(f"{importer}:{node.lineno} builds a WriteBatch (svc.batch())")
        if any(m == banned or m.startswith(banned + ".") for m in names
               for banned in REDIS_IMPORTS):
            found.append(f"{importer}:{node.lineno} imports {', '.join(names)}")
    return found


def test_flows_never_touch_redis():
    reaching = []
    for name, path in package_modules():
        if layer_of(name) == "flows":
            reaching += redis_reaches(path.read_text(encoding="utf-8"), name)
    assert not reaching, "a flow touching Redis (a store method instead):\n" + "\n".join(
        reaching)


@pytest.mark.parametrize(("source", "expected"), [
    ("import redis", 1),
    ("from redis.cluster import RedisCluster", 1),
    ("from gurugrow.stores import keys as redis_keys", 1),
    ("from gurugrow.stores.keys import binding_cache", 1),
    ("def f(svc):\n    return svc.redis.get('k')", 1),
    ("def f(svc):\n    r = svc.redis\n    return r.ttl('k')", 1),
    ("def f(svc):\n    return svc.storage.client.get('k')", 1),
    ("def f(svc):\n    return svc.storage.clear_prefix()", 1),
    ("from gurugrow.stores.server import RedisServer", 1),
    ("from gurugrow.stores.client import WriteBatch\nb = WriteBatch(None)", 1),
    ("from gurugrow.stores.client import WriteBatch\ndef f(b: WriteBatch): ...", 0),
    ("def f(svc):\n    return svc.caches.orders('1', 60, list)", 0),
])
def test_the_check_sees_a_flow_touching_redis(source, expected):
    assert len(redis_reaches(source, "gurugrow.flows.auth")) == expected


def test_services_hold_no_redis_client():
    """Services hands out stores and gateways: no field is the raw client (``redis``) or
    typed ``Any``, where a client would hide."""
    import dataclasses

    from gurugrow.services import Services

    loose = [f.name for f in dataclasses.fields(Services)
             if f.name == "redis" or "Any" in str(f.type)]
    assert not loose, f"Services fields that could hold a raw Redis client: {loose}"


# The request-scoped state: the log lines' request id, and everything else in one module.
CONTEXT_VARIABLE_HOMES = {"gurugrow.logs", "gurugrow.basics.request_scope"}


def module_level_context_variables(source: str) -> list[int]:
    """The lines of ``source`` that make a ContextVar outside any function or class."""
    found = []
    for node in ast.parse(source).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call) and (
                (isinstance(value.func, ast.Name) and value.func.id == "ContextVar")
                or (isinstance(value.func, ast.Attribute) and value.func.attr == "ContextVar")):
            found.append(node.lineno)
    return found


def test_request_scoped_state_lives_in_one_module():
    strays = []
    for name, path in package_modules():
        if name not in CONTEXT_VARIABLE_HOMES:
            strays += [f"{name}:{line}" for line in
                       module_level_context_variables(path.read_text(encoding="utf-8"))]
    assert not strays, ("a context variable outside gurugrow.basics.request_scope:\n"
                        + "\n".join(strays))


@pytest.mark.parametrize(("source", "expected"), [
    ("from contextvars import ContextVar\nX: ContextVar[int] = ContextVar('x', default=0)", 1),
    ("import contextvars\nX = contextvars.ContextVar('x')", 1),
    ("from contextvars import ContextVar\ndef f():\n    return ContextVar('x')", 0),
])
def test_the_check_sees_a_module_level_context_variable(source, expected):
    assert len(module_level_context_variables(source)) == expected


# -- no import circle, the bench included ---------------------------------------------
CIRCLE_ROOTS = ("gurugrow", "bench")


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of ``CIRCLE_ROOTS`` it imports (lazy imports too)."""
    graph: dict[str, set[str]] = {}
    for root in CIRCLE_ROOTS:
        for path in sorted((PACKAGE.parent / root).rglob("*.py")):
            name = module_name(path)
            graph[name] = imported_modules(path.read_text(encoding="utf-8"), name,
                                           path.name == "__init__.py", CIRCLE_ROOTS) - {name}
    return graph


def import_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (its modules, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for imported in sorted(graph.get(module, ())):
            if imported in on_path:
                return path[path.index(imported):] + [imported]
            if imported not in done and (circle := visit(imported)):
                return circle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (circle := visit(module)):
            return circle
    return None


def test_no_import_circle_in_the_package_or_the_bench():
    graph = import_graph()
    assert "bench.run" in graph and "gurugrow.flows.auth" in graph
    circle = import_circle(graph)
    assert circle is None, "an import circle: " + " → ".join(circle or [])


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),  # a diamond is no circle
])
def test_the_check_sees_an_import_circle(graph, expected):
    assert import_circle(graph) == expected
