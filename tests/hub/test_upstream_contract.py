"""The non-public parts of KubeSpawner and JupyterHub that BERDLSpawner leans on (all of them reached
through berdl_hub.upstream), and the versions they are pinned to in constraints.txt. A change of
signature or behaviour here fails this test before it breaks a spawn; update upstream.py and the pin
together."""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import jupyterhub.apihandlers.proxy
import jupyterhub.apihandlers.users
import jupyterhub.app
import jupyterhub.handlers.base
import jupyterhub.log
import jupyterhub.orm
import jupyterhub.user
import kubespawner.objects
import kubespawner.reflector
import pytest
from berdl_hub import upstream
from berdl_hub.spawner import BERDLSpawner
from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
HUB_PACKAGE = REPO / "hub" / "berdl_hub"


def pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_kubespawner_and_its_client_run_at_the_pinned_versions() -> None:
    pins = pinned()
    for distribution in ("jupyterhub-kubespawner", "kubernetes-asyncio", "jupyterhub"):
        assert version(distribution) == pins[distribution], distribution


def test_the_private_methods_keep_their_signatures() -> None:
    # upstream.expand: template expansion with KubeSpawner's own slugs (home paths, favorites).
    assert str(inspect.signature(KubeSpawner._expand_user_properties)) == "(self, template, slug_scheme=None)"
    # upstream.pod_url: a pod's server URL by KubeSpawner's own rule, for get_url().
    assert str(inspect.signature(KubeSpawner._get_pod_url)) == "(self, pod)"
    # upstream.jupyterhub_access_scopes: JupyterHub's access scopes, for access_for_owner_only = False.
    handler = Spawner._default_access_scopes  # a traitlets default, bound when read from a spawner
    assert (handler.trait_name, str(inspect.signature(handler.func))) == ("oauth_access_scopes", "(self)")
    # upstream.oauth_client_scopes: what the server's OAuth client may ask for (a callable setting is called).
    assert "allowed_scopes = allowed_scopes(self)" in inspect.getsource(
        Spawner._get_oauth_client_allowed_scopes
    )
    # upstream.log_name: JupyterHub's "user" or "user:server" for log lines.
    assert isinstance(inspect.getattr_static(Spawner, "_log_name"), property)
    # upstream.chosen_profile: the profile list as load_user_options initializes it, and its choice.
    assert str(inspect.signature(KubeSpawner._sorted_dict_values)) == "(self, src)"
    assert str(inspect.signature(KubeSpawner._get_initialized_profile_list)) == "(self, profile_list: list)"
    assert (
        str(inspect.signature(KubeSpawner._get_profile)) == "(self, slug: Optional[str], profile_list: list)"
    )


def test_the_reflector_keys_pods_by_namespace_and_name() -> None:
    """upstream.reflected_pod looks a pod up as "{namespace}/{name}"."""
    assert 'f\'{p["metadata"]["namespace"]}/{p["metadata"]["name"]}\': p' in inspect.getsource(
        kubespawner.reflector
    )
    assert 'ref_key = f"{self.namespace}/{self.pod_name}"' in inspect.getsource(KubeSpawner.poll)


def test_the_notebook_container_is_called_notebook() -> None:
    assert upstream.NOTEBOOK_CONTAINER == "notebook"
    assert "name='notebook'," in inspect.getsource(kubespawner.objects.make_pod)
    assert "if c[\"name\"] == 'notebook':" in inspect.getsource(KubeSpawner.poll)


def test_jupyterhub_saves_the_state_only_after_start_and_keeps_every_server_in_user_spawners() -> None:
    """upstream.save_state writes orm_spawner.state and commits in the middle of a start, because
    JupyterHub does it only once start() has returned; upstream.sibling_spawners reads user.spawners."""
    spawn = inspect.getsource(jupyterhub.user.User.spawn)
    assert spawn.index("f = maybe_future(spawner.start())") < spawn.index(
        "spawner.orm_spawner.state = spawner.get_state()"
    )
    assert "self.spawners = _SpawnerDict(self._new_spawner)" in inspect.getsource(jupyterhub.user.User)
    assert "db = Any()" in inspect.getsource(Spawner)


def test_kubespawner_applies_the_profile_again_in_its_start() -> None:
    """upstream.apply_user_options applies it before KubeSpawner's start does it again."""
    assert "await self.load_user_options()" in inspect.getsource(KubeSpawner._start)


@pytest.mark.asyncio
async def test_applying_a_profile_twice_is_the_same_as_once(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    profiles = [
        {"display_name": "M", "slug": "m", "default": True, "kubespawner_override": {"mem_limit": "16G"}},
        {
            "display_name": "L",
            "slug": "l",
            "kubespawner_override": {"mem_limit": "64G", "spark_cluster_config": {"worker_count": 8}},
        },
    ]
    spawner = make_spawner(profile_list=profiles)
    spawner.user_options = {"profile": "l"}
    await upstream.apply_user_options(spawner)
    once = (spawner.mem_limit, dict(spawner.spark_cluster_config))
    await upstream.apply_user_options(spawner)
    assert (spawner.mem_limit, dict(spawner.spark_cluster_config)) == once
    assert once[0] == 64 * 2**30
    assert once[1]["worker_count"] == 8


def test_load_user_options_chooses_the_profile_as_chosen_profile_does() -> None:
    """upstream.chosen_profile repeats the first steps of KubeSpawner's load_user_options."""
    source = inspect.getsource(KubeSpawner.load_user_options)
    for step in (
        "profile_list = self._sorted_dict_values(self.profile_list)",
        "profile_list = self._get_initialized_profile_list(profile_list)",
        'selected_profile = self.user_options.get("profile")',
        "self._load_profile(selected_profile, profile_list)",
    ):
        assert step in source, step
    assert "profile = self._get_profile(slug, profile_list)" in inspect.getsource(KubeSpawner._load_profile)


@pytest.mark.asyncio
async def test_chosen_profile_is_the_one_kubespawner_applies(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    profiles = [
        {"display_name": "Medium Size", "kubespawner_override": {"mem_limit": "16G"}},
        {
            "display_name": "Large",
            "slug": "large",
            "default": True,
            "kubespawner_override": {"mem_limit": "64G"},
        },
    ]
    spawner = make_spawner(profile_list=profiles)
    for options, slug, mem_limit in (({}, "large", 64), ({"profile": "medium-size"}, "medium-size", 16)):
        spawner.user_options = options
        await upstream.apply_user_options(spawner)
        chosen = await upstream.chosen_profile(spawner)
        assert chosen is not None
        assert (chosen["slug"], spawner.mem_limit) == (slug, mem_limit * 2**30)
    assert await upstream.chosen_profile(make_spawner()) is None  # no profiles


def test_kubespawner_leaves_a_failure_after_its_pod_create_to_the_create_itself() -> None:
    """BERDLSpawner makes the server's objects in its `_make_create_pod_request`, from the pod the API
    server's answer describes. What it relies on is how KubeSpawner's (private) start calls that: retried
    while it returns False, its exception passed on with no clean-up (so the create stops the pod
    itself, as KubeSpawner stops it when an after_pod_created_hook fails), and an operator's
    after_pod_created_hook still called after it, with the pod once it has a uid."""
    source = inspect.getsource(KubeSpawner._start)
    create = source.index("partial(self._make_create_pod_request, pod, self.k8s_api_request_timeout)")
    assert "await exponential_backoff(" in source[create - 80 : create]
    hook_stage = source.index("if self.internal_ssl or self.services_enabled or self.after_pod_created_hook:")
    assert "try:" not in source[create - 300 : hook_stage]
    assert "self.pod_has_uid(" in source[hook_stage:]
    assert "await maybe_future(self.after_pod_created_hook(self, pod))" in source[hook_stage:]
    assert "await self.stop(True)" in source[hook_stage:]
    # A pod of the same name still there: KubeSpawner stops it (BERDLSpawner.stop then deletes only the pod).
    assert "await self.stop(True)" in inspect.getsource(KubeSpawner._make_create_pod_request)


def test_kubespawner_creates_its_pod_as_upstream_create_pod_does() -> None:
    """upstream.create_pod replaces KubeSpawner's `_make_create_pod_request` but for reading the answer:
    its start calls it, retried until True, and uses nothing it returns but that. Its body is pinned: any
    change of it fails here, to be carried over to upstream.create_pod."""
    assert str(inspect.signature(KubeSpawner._make_create_pod_request)) == "(self, pod, request_timeout)"
    assert "partial(self._make_create_pod_request, pod, self.k8s_api_request_timeout)" in inspect.getsource(
        KubeSpawner._start
    )
    source = inspect.getsource(KubeSpawner._make_create_pod_request)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == "945358c8d90be887"


def test_the_kubernetes_client_reads_the_environment_before_each_request_only_when_trusting_it() -> None:
    """upstream.kube_client: kubernetes_asyncio's session trusts the environment, and aiohttp reads the
    netrc and the proxy variables before each request of a session that does (`_trust_env`), with the
    helpers `_env_applies` asks once."""
    import aiohttp.client
    import kubernetes_asyncio.client.rest

    rest = inspect.getsource(kubernetes_asyncio.client.rest.RESTClientObject.__init__)
    assert "self.pool_manager = aiohttp.ClientSession(" in rest
    assert "trust_env=True," in rest
    request = inspect.getsource(aiohttp.client.ClientSession._request)
    assert "if auth is None and self._trust_env and url.host is not None:" in request
    assert "self._get_netrc_auth, url.host" in request
    assert "elif self._trust_env:" in request
    assert "get_env_proxy_for_url, url" in request
    assert "netrc_obj = netrc_from_env()" in inspect.getsource(aiohttp.client.ClientSession._get_netrc_auth)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("proxy", "netrc", "trusting"),
    [(False, False, False), (True, False, True), (False, True, True)],
    ids=["nothing-to-find", "behind-a-proxy", "with-a-netrc"],
)
async def test_the_kubernetes_client_stops_reading_the_environment_only_where_it_finds_nothing(
    proxy: bool, netrc: bool, trusting: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localhub.standins.hub import reset_kubespawner

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "NETRC"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if proxy:
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    if netrc:
        (tmp_path / ".netrc").write_text("machine proxy.example login hub password secret\n")
    try:
        api = upstream.kube_client("CoreV1Api")
        assert api.api_client.rest_client.pool_manager.trust_env is trusting
        assert upstream.kube_client("CoreV1Api") is api  # KubeSpawner's shared client, not a copy
    finally:
        await reset_kubespawner()


def test_the_hubs_request_log_is_jupyterhubs_log_request_which_an_operators_setting_replaces() -> None:
    """hub_requests counts requests in tornado's log_function, after upstream.jupyterhub_log_request: it
    is JupyterHub's default log_function, and JupyterHub.tornado_settings wins over its defaults."""
    source = inspect.getsource(jupyterhub.app.JupyterHub.init_tornado_settings)
    assert "log_function=log_request," in source
    assert source.index("log_function=log_request,") < source.index("settings.update(self.tornado_settings)")
    assert "from .log import CoroutineLogFormatter, log_request" in inspect.getsource(jupyterhub.app)


def test_the_server_and_proxy_apis_are_the_handlers_hub_requests_counts() -> None:
    """upstream.is_server_api / is_proxy_api: the handlers of DELETE .../server (first path argument: the
    user's name; 202 or 204 once stopping) and POST /api/proxy (a sync of the routes)."""
    routes = dict((pattern, handler) for pattern, handler in jupyterhub.apihandlers.users.default_handlers)
    server_api = jupyterhub.apihandlers.users.UserServerAPIHandler
    assert routes[r"/api/users/([^/]+)/server"] is server_api
    assert routes[r"/api/users/([^/]+)/servers/([^/]*)"] is server_api
    assert str(inspect.signature(server_api.delete)) == "(self, user_name, server_name='')"
    assert "status = 202 if spawner._stop_pending else 204" in inspect.getsource(server_api.delete)
    assert jupyterhub.apihandlers.proxy.default_handlers == [
        (r"/api/proxy", jupyterhub.apihandlers.proxy.ProxyAPIHandler)
    ]
    assert "await self.proxy.check_routes(" in inspect.getsource(
        jupyterhub.apihandlers.proxy.ProxyAPIHandler.post
    )


def test_a_requests_current_user_is_a_user_or_a_service_with_kind_and_name() -> None:
    """upstream.requester reads `kind` and `name` of handler.current_user: a service token's is the
    orm.Service, a user's is the User (which passes attributes through to orm.User)."""
    assert (jupyterhub.orm.User.kind, jupyterhub.orm.Service.kind) == ("user", "service")
    source = inspect.getsource(jupyterhub.handlers.base.BaseHandler.get_current_user_token)
    assert "return orm_token.service" in source
    assert "def __getattr__(self, attr):" in inspect.getsource(jupyterhub.user.User)


def test_a_stop_shows_as_pending_then_as_the_servers_last_activity() -> None:
    """upstream.stopped_by: a stopping server's `pending` is "stop"; User.stop sets the server's
    last_activity once its stop has ended; handlers find a user by name."""
    pending = inspect.getsource(Spawner.pending.fget)
    assert "if self._stop_pending:" in pending
    assert "return 'stop'" in pending
    stop = inspect.getsource(jupyterhub.user.User.stop)
    assert stop.index("await spawner.stop()") < stop.index("spawner.orm_spawner.last_activity = utcnow(")
    assert "with_tz=False" in stop  # naive UTC, as stopped_by compares it
    assert str(inspect.signature(jupyterhub.handlers.base.BaseHandler.find_user)) == "(self, name)"


def test_what_the_hub_process_parts_rely_on() -> None:
    """revocation and token_refresh (through upstream): the hub's users with servers, JupyterHub's stop
    of one server without a request, the mark that makes the next request refresh a login; and the
    peer address tornado keeps beside the remote_ip that JupyterHub's HTTP server rewrites."""
    import jupyterhub.app
    import tornado.httpserver
    from jupyterhub.handlers.base import BaseHandler

    init_spawners = inspect.getsource(jupyterhub.app.JupyterHub.init_spawners)
    assert "user = self.users[orm_user]" in init_spawners  # every user with a server is in app.users
    assert "def _users_default(self):" in inspect.getsource(jupyterhub.app.JupyterHub)
    stop = inspect.getsource(BaseHandler.stop_single_user)
    for step in (
        "spawner._stop_pending = True",
        "await self.proxy.delete_user(user, server_name)",
        "await user.stop(server_name)",
        "spawner._stop_future = None",
        "future = spawner._stop_future = asyncio.ensure_future(stop())",
    ):
        assert step in stop, step
    assert "_auth_refreshed = None" in inspect.getsource(jupyterhub.user.User)
    refresh = inspect.getsource(BaseHandler.refresh_auth)
    assert "and user._auth_refreshed" in refresh
    assert str(inspect.signature(BaseHandler.refresh_auth)) == "(self, user, force=False)"
    assert "await self.refresh_auth(user)" in inspect.getsource(BaseHandler.get_current_user)
    assert "self.address = address" in inspect.getsource(tornado.httpserver._HTTPRequestContext)
    assert "xheaders=True," in inspect.getsource(jupyterhub.app.JupyterHub.start)


def test_the_peer_address_is_the_connections_not_the_headers() -> None:
    class Context:
        address = ("10.1.2.3", 40000)
        remote_ip = "203.0.113.9"  # what xheaders made of X-Real-Ip

    class Connection:
        context = Context()

    class Request:
        connection = Connection()

    assert upstream.peer_address(Request()) == "10.1.2.3"
    assert upstream.peer_address(object()) is None


# What only upstream.py may touch: private attributes of a spawner or user, and the habits above.
PRIVATE_REACH = re.compile(
    r"\b(?:self|spawner|s|other)\._(?:expand_user_properties|get_pod_url|log_name)\b"
    r"|\._(?:auth_refreshed|stop_pending|stop_future|default_access_scopes|get_oauth_client_allowed_scopes)\b|\.connection\.context\b|\bapp\.users\b"
    r"|\.pod_reflector\b|\.orm_spawner\b|\.db\.commit\(|\buser\.spawners\b|\.spawners\b"
    r"|[\"']notebook[\"']|\bload_user_options\("
    r"|\._trust_env\b|\brest_client\.pool_manager\b"
    # JupyterHub's request log and its API handlers' modules; `jupyterhub.apihandlers.APIHandler`, the
    # base class JupyterHub's docs give extra handlers (token_refresh's endpoint), is public
    r"|\bjupyterhub\.log\b|\bjupyterhub\.apihandlers\.\w"
)


def test_nothing_but_upstream_reaches_into_kubespawner_or_jupyterhub() -> None:
    found = []
    for path in sorted(HUB_PACKAGE.glob("*.py")):
        if path.name == "upstream.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            node.body[0].value.lineno
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if number not in docstrings and PRIVATE_REACH.search(code):
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == []
