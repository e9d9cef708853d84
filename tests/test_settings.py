"""Settings: defaults, the YAML file, IMAGE_UPDATER_* overrides (nesting, list entries, JSON), durations,
one error message listing every bad field, unknown keys, paths that escape the repository, secrets never
echoed, and every field documented."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from image_updater import settings as settings_module
from image_updater.errors import ConfigError
from image_updater.settings import (
    AuthSettings,
    CommitSettings,
    HttpSettings,
    Settings,
    SourceSettings,
    load_settings,
    source_transport,
)

FULL = """\
interval: 90s
cache_dir: ~/cache/iu
policy_dirs: [/etc/image-updater/policies, ~/policies]
sources:
  - name: apps
    url: https://git.example.com/acme/apps.git
    branch: production
    push_branch: image-updater/production
    paths: [clusters/prod, ./apps/]
    auth: {token_env: GIT_TOKEN, username: oauth2}
  - name: infra
    url: git@github.com:acme/infra.git
    auth: {ssh_key_file: ~/.ssh/deploy, known_hosts: /etc/ssh/known_hosts}
  - name: local
    url: /srv/git/local.git
commit:
  author_name: Image Bot
  author_email: bot@example.com
  message_template: "{{ summary }}"
  skip_ci: true
registries:
  - prefix: ghcr.io/acme/
    credentials: env:GHCR_CREDS
    rate_limit: 5.5
    max_concurrency: 4
  - prefix: 127.0.0.1:5000
    api_url: http://127.0.0.1:5000/
    insecure: true
  - prefix: registry.internal
    ca_file: ~/ca.pem
    tls_verify: false
    credentials: dockerconfig:/run/secrets/config.json
http: {listen: "0.0.0.0:9090", webhook_secret_env: HOOK_SECRET}
log: {level: DEBUG, format: json}
"""


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


def test_defaults(_home: Path) -> None:
    settings = load_settings(env={})
    assert settings.interval == timedelta(minutes=5)
    assert settings.cache_dir == _home / ".cache" / "image-updater"
    assert settings.policy_dirs == []
    assert settings.sources == []
    assert settings.registries == []
    assert settings.commit.author == ("image-updater", "image-updater@localhost")
    assert settings.commit.committer == settings.commit.author
    assert settings.commit.message_template is None
    assert settings.commit.skip_ci is False
    assert (settings.http.listen, settings.http.host, settings.http.port) == (
        "127.0.0.1:8080",
        "127.0.0.1",
        8080,
    )
    assert settings.http.webhook_secret_env is None
    assert (settings.log.level, settings.log.format) == ("info", "text")


def test_full_file(tmp_path: Path, _home: Path) -> None:
    settings = load_settings(write(tmp_path, FULL), env={})
    assert settings.interval == timedelta(seconds=90)
    assert settings.cache_dir == _home / "cache" / "iu"
    assert settings.policy_dirs == [Path("/etc/image-updater/policies"), _home / "policies"]

    apps, infra, local = settings.sources
    assert (apps.name, apps.url, apps.branch, apps.push_branch) == (
        "apps",
        "https://git.example.com/acme/apps.git",
        "production",
        "image-updater/production",
    )
    assert apps.paths == ["clusters/prod", "apps"]
    assert apps.auth == AuthSettings(token_env="GIT_TOKEN", username="oauth2")
    assert apps.transport == "https"
    assert infra.transport == "ssh"
    assert infra.auth.ssh_key_file == _home / ".ssh" / "deploy"
    assert infra.auth.known_hosts == Path("/etc/ssh/known_hosts")
    assert (infra.branch, infra.push_branch, infra.paths) == ("main", None, ["."])
    assert local.transport == "local"
    assert local.auth == AuthSettings()

    assert settings.commit.author == ("Image Bot", "bot@example.com")
    assert settings.commit.committer == ("Image Bot", "bot@example.com")
    assert settings.commit.message_template == "{{ summary }}"
    assert settings.commit.skip_ci is True

    ghcr, local_registry, internal = settings.registries
    assert (ghcr.prefix, ghcr.credentials, ghcr.rate_limit, ghcr.max_concurrency) == (
        "ghcr.io/acme",
        "env:GHCR_CREDS",
        5.5,
        4,
    )
    assert (ghcr.api_url, ghcr.insecure, ghcr.tls_verify, ghcr.ca_file) == (None, False, True, None)
    assert (local_registry.api_url, local_registry.insecure) == ("http://127.0.0.1:5000", True)
    assert (internal.ca_file, internal.tls_verify) == (_home / "ca.pem", False)
    assert internal.credentials == "dockerconfig:/run/secrets/config.json"
    assert internal.max_concurrency == 8
    assert (settings.http.listen, settings.http.webhook_secret_env) == ("0.0.0.0:9090", "HOOK_SECRET")
    assert (settings.log.level, settings.log.format) == ("debug", "json")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "IMAGE_UPDATER_INTERVAL": "30s",
        "IMAGE_UPDATER_COMMIT__AUTHOR_NAME": "Env Bot",
        "IMAGE_UPDATER_COMMIT__COMMITTER_EMAIL": "ci@example.com",
        "IMAGE_UPDATER_LOG__LEVEL": "warning",
        "IMAGE_UPDATER_HTTP__LISTEN": "127.0.0.1:9999",
        "IMAGE_UPDATER_SOURCES__0__BRANCH": "staging",
        "IMAGE_UPDATER_SOURCES__1__AUTH__KNOWN_HOSTS": "/tmp/kh",
        "IMAGE_UPDATER_SOURCES__0__PATHS": '["only/this"]',
        "IMAGE_UPDATER_POLICY_DIRS": '["/opt/policies"]',
        "IMAGE_UPDATER_GIT_TOKEN": "not a setting: ignored",
        "UNRELATED": "x",
    }
    settings = load_settings(write(tmp_path, FULL), env=env)
    assert settings.interval == timedelta(seconds=30)
    assert settings.commit.author == ("Env Bot", "bot@example.com")  # the file's other commit keys stay
    assert settings.commit.committer == ("Env Bot", "ci@example.com")
    assert settings.commit.skip_ci is True
    assert settings.log.level == "warning"
    assert settings.log.format == "json"
    assert settings.http.listen == "127.0.0.1:9999"
    assert settings.sources[0].branch == "staging"
    assert settings.sources[0].paths == ["only/this"]
    assert settings.sources[0].url == "https://git.example.com/acme/apps.git"
    assert settings.sources[1].auth.known_hosts == Path("/tmp/kh")
    assert settings.sources[1].auth.ssh_key_file is not None
    assert settings.policy_dirs == [Path("/opt/policies")]


def test_environment_alone_and_json_lists() -> None:
    env = {
        "IMAGE_UPDATER_SOURCES": '[{"name": "a", "url": "/srv/a.git"}, {"name": "b", "url": "/srv/b.git"}]',
        "IMAGE_UPDATER_REGISTRIES": '[{"prefix": "docker.io", "max_concurrency": 2}]',
        "image_updater_interval": "2m",  # names are case-insensitive
    }
    settings = load_settings(env=env)
    assert [s.name for s in settings.sources] == ["a", "b"]
    assert settings.registries[0].max_concurrency == 2
    assert settings.interval == timedelta(minutes=2)


def test_a_json_group_takes_its_nested_variables_over_it_and_the_file_under_it(tmp_path: Path) -> None:
    config = write(tmp_path, "commit:\n  author_email: file@example.com\n  skip_ci: false\n")
    env = {
        "IMAGE_UPDATER_COMMIT": '{"AUTHOR_NAME": "json", "skip_ci": true}',  # any case
        "IMAGE_UPDATER_COMMIT__AUTHOR_NAME": "nested",
        "IMAGE_UPDATER_INTERVAL__UNIT": "ignored: interval is no group",
    }
    settings = load_settings(config, env=env)
    assert settings.commit.author == ("nested", "file@example.com")
    assert settings.commit.skip_ci is True
    assert settings.interval == timedelta(minutes=5)


def test_json_list_override_where_the_file_has_no_value(tmp_path: Path) -> None:
    config = write(tmp_path, "sources:\n  - {name: a, url: /srv/a.git}\n  - {name: b, url: /srv/b.git}\n")
    env = {
        "IMAGE_UPDATER_SOURCES__1__PATHS": '["apps", "infra"]',  # sources[1] has no paths key in the file
        "IMAGE_UPDATER_HTTP__LISTEN": "[::1]:8080",  # looks like JSON, is a string setting
        "IMAGE_UPDATER_COMMIT__MESSAGE_TEMPLATE": "{{ summary }}",
    }
    settings = load_settings(config, env=env)
    assert settings.sources[1].paths == ["apps", "infra"]
    assert settings.sources[0].paths == ["."]
    assert settings.http.listen == "[::1]:8080"
    assert settings.commit.message_template == "{{ summary }}"


def test_config_file_from_environment(tmp_path: Path) -> None:
    from_env = write(tmp_path, "interval: 7m\n", "env.yaml")
    explicit = write(tmp_path, "interval: 8m\n", "explicit.yaml")
    env = {"IMAGE_UPDATER_CONFIG": str(from_env)}
    assert load_settings(env=env).interval == timedelta(minutes=7)
    assert load_settings(explicit, env=env).interval == timedelta(minutes=8)


def test_os_environ_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_UPDATER_CONFIG", str(write(tmp_path, "interval: 3m\n")))
    monkeypatch.setenv("IMAGE_UPDATER_LOG__FORMAT", "json")
    settings = load_settings()
    assert (settings.interval, settings.log.format) == (timedelta(minutes=3), "json")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("1500ms", 1.5),
        ("2d", 172800),
        ("1m30s", 90),
        ("10M", 600),
        ("1w", 604800),
        ("500ms 1s", 1.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert load_settings(env={"IMAGE_UPDATER_INTERVAL": text}).interval == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("5", "needs a unit: write 5s"),
        ("5 minutes", "is not a duration"),
        ("", "is not a duration"),
        ("m5", "is not a duration"),
        ("1x", "is not a duration"),
        ("5m30", "is not a duration"),
        ("-5m", "is not a duration"),
        ("0s", "at least 1s"),
        ("500ms", "at least 1s"),
        ("1h1h", "unit 'h' given twice"),
    ],
)
def test_bad_durations(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"IMAGE_UPDATER_INTERVAL": text})
    [line] = problems(info)
    assert line.startswith("interval: ")
    assert fragment in line
    assert line.endswith("(from IMAGE_UPDATER_INTERVAL)")


def test_a_number_in_yaml_needs_a_unit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interval: a duration needs a unit: write 30s"):
        load_settings(write(tmp_path, "interval: 30\n"), env={})


def test_every_bad_field_in_one_message(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        interval: soon
        sources:
          - name: apps
            url: ""
            branch: "bad..branch"
            paths: []
          - url: https://example.com/x.git
          - name: apps
            url: ftp://example.com/x.git
        commit:
          author_email: "a <b>"
          message_template: "{{ summary"
        registries:
          - prefix: https://ghcr.io
            api_url: ghcr.io
            rate_limit: 0
            max_concurrency: 0
          - {}
        http: {listen: 8080, webhook_secret_env: "not a name"}
        log: {level: loud, format: xml}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={"IMAGE_UPDATER_COMMIT__SKIP_CI": "perhaps"})
    lines = problems(info)
    paths = [line.split(": ", 1)[0] for line in lines]
    assert paths == [
        "interval",
        "sources[0].url",
        "sources[0].branch",
        "sources[0].paths",
        "sources[1].name",
        "sources[2].url",
        "commit.author_email",
        "commit.message_template",
        "commit.skip_ci",
        "registries[0].prefix",
        "registries[0].api_url",
        "registries[0].rate_limit",
        "registries[0].max_concurrency",
        "registries[1].prefix",
        "http.listen",
        "http.webhook_secret_env",
        "log.level",
        "log.format",
        "sources[2].name",
    ]
    message = str(info.value)
    assert message.startswith(f"invalid configuration ({config} + environment), 19 problems:\n")
    assert "sources[1].name: required" in message
    assert "sources[2].url: unsupported URL scheme 'ftp'" in message
    assert "sources[2].name: duplicate source name (also sources[0])" in message
    assert "commit.skip_ci: Input should be a valid boolean" in message
    assert "(from IMAGE_UPDATER_COMMIT__SKIP_CI)" in message
    assert "commit.message_template: commit message template does not compile (line 1)" in message


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        intervall: 5m
        sources:
          - {name: a, url: /srv/a.git, brnach: main, auth: {tokenenv: X}}
        commit: {autor_name: x}
        registries: [{prefix: docker.io, mirror: x}]
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={"IMAGE_UPDATER_LOG__LEVL": "debug"})
    assert sorted(problems(info)) == [
        "commit.autor_name: unknown key (did you mean 'author_name'?)",
        "intervall: unknown key (did you mean 'interval'?)",
        "log.levl: unknown key (did you mean 'level'?) (from IMAGE_UPDATER_LOG__LEVL)",
        "registries[0].mirror: unknown key (known keys: prefix, api_url, insecure, tls_verify, ca_file, "
        "credentials, rate_limit, max_concurrency)",
        "sources[0].auth.tokenenv: unknown key (did you mean 'token_env'?)",
        "sources[0].brnach: unknown key (did you mean 'branch'?)",
    ]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("..", "must not leave the repository"),
        ("apps/../../etc", "must not leave the repository"),
        ("/etc/passwd", "must be relative to the repository root"),
        ("~/apps", "must be relative to the repository root"),
        ("", "must be relative to the repository root"),
        (".git/hooks", "must not point into .git"),
        ("..\\windows", "must not leave the repository"),
    ],
)
def test_paths_must_stay_inside_the_repository(path: str, fragment: str) -> None:
    sources = [{"name": "a", "url": "/srv/a.git", "paths": ["ok", path]}]
    with pytest.raises(ConfigError) as info:
        load_settings(env={"IMAGE_UPDATER_SOURCES": json.dumps(sources)})
    [line] = problems(info)
    assert line.startswith("sources[0].paths[1]: ")
    assert fragment in line


def test_paths_are_normalised() -> None:
    source = SourceSettings(name="a", url="/srv/a.git", paths=["./apps/", "a//b", "."])
    assert source.paths == ["apps", "a/b", "."]


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("https://github.com/acme/apps.git", "https"),
        ("http://127.0.0.1:8080/apps.git", "http"),
        ("ssh://git@github.com:22/acme/apps.git", "ssh"),
        ("git@github.com:acme/apps.git", "ssh"),
        ("github.com:acme/apps.git", "ssh"),
        ("git://example.com/apps.git", "git"),
        ("file:///srv/git/apps.git", "file"),
        ("/srv/git/apps.git", "local"),
        ("./repos/apps.git", "local"),
        ("repos/a:b.git", "local"),
    ],
)
def test_transports(url: str, transport: str) -> None:
    assert source_transport(url) == transport


def test_local_path_urls_expand_home(_home: Path) -> None:
    assert SourceSettings(name="a", url="~/git/apps.git").url == str(_home / "git" / "apps.git")


def test_credentials_in_urls_are_refused_without_being_echoed() -> None:
    env = {
        "IMAGE_UPDATER_SOURCES": '[{"name": "a", "url": "https://bot:hunter2-canary@git.example.com/a.git"},'
        ' {"name": "b", "url": "https://ghp_canary2@github.com/a.git"}]',
        "IMAGE_UPDATER_REGISTRIES": '[{"prefix": "ghcr.io", "credentials": "hunter3-canary"}]',
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    message = str(info.value)
    assert "sources[0].url: credentials in the URL are not allowed" in message
    assert "sources[1].url: a user name in an HTTPS URL is not allowed" in message
    assert "registries[0].credentials: must be env:VAR, file:PATH or dockerconfig:PATH" in message
    for secret in ("hunter2-canary", "ghp_canary2", "hunter3-canary"):
        assert secret not in message


def test_ssh_urls_need_known_hosts_unless_told_otherwise() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"IMAGE_UPDATER_SOURCES": '[{"name": "a", "url": "git@github.com:a/b.git"}]'})
    [line] = problems(info)
    assert line.startswith("sources[0].auth.known_hosts: required for SSH URLs")
    insecure = SourceSettings(
        name="a", url="git@github.com:a/b.git", auth=AuthSettings(insecure_skip_host_key_check=True)
    )
    assert insecure.transport == "ssh"


def test_auth_must_fit_the_url() -> None:
    env = {
        "IMAGE_UPDATER_SOURCES": '[{"name": "a", "url": "/srv/a.git", "auth": {"token_env": "T", '
        '"ssh_key_file": "/k"}}, {"name": "b", "url": "https://x/b.git", "branch": "main", '
        '"push_branch": "main"}]'
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert problems(info) == [
        "sources[0].auth.token_env: a token is only used with https URLs, not local",
        "sources[0].auth.ssh_key_file: an SSH key is only used with SSH URLs, not local",
        "sources[1].push_branch: must differ from branch (leave it unset to push to branch itself)",
    ]


def test_duplicate_registry_prefixes() -> None:
    env = {"IMAGE_UPDATER_REGISTRIES": '[{"prefix": "ghcr.io/"}, {"prefix": "ghcr.io"}]'}
    with pytest.raises(
        ConfigError, match=r"registries\[1\].prefix: duplicate prefix \(also registries\[0\]\)"
    ):
        load_settings(env=env)


def test_list_entry_override_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"sources\[3\]: no such entry to override from IMAGE_UPDATER_SOURCES__3"
    ):
        load_settings(write(tmp_path, FULL), env={"IMAGE_UPDATER_SOURCES__3__BRANCH": "x"})


def test_malformed_json_in_the_environment() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"IMAGE_UPDATER_SOURCES": "[{not json"})
    assert "sources: expected a JSON list" in str(info.value)
    assert "(from IMAGE_UPDATER_SOURCES)" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("IMAGE_UPDATER_POLICY_DIRS", "/etc/p", "policy_dirs: expected a JSON list"),
        ("IMAGE_UPDATER_HTTP", "notjson", "http: expected a JSON object"),
        ("IMAGE_UPDATER_SOURCES__1__PATHS", "apps", "sources[1].paths: expected a JSON list"),
        ("IMAGE_UPDATER_SOURCES__0__AUTH", "token", "sources[0].auth: expected a JSON object"),
        ("IMAGE_UPDATER_COMMIT", "[1", "commit: expected a JSON object"),
    ],
)
def test_text_that_is_no_json_for_a_list_or_group_names_the_variable(
    tmp_path: Path, variable: str, value: str, line: str
) -> None:
    config = write(tmp_path, "sources:\n  - {name: a, url: /srv/a.git}\n  - {name: b, url: /srv/b.git}\n")
    env = {variable: value, "IMAGE_UPDATER_INTERVAL": "30"}  # every other problem is still reported
    with pytest.raises(ConfigError) as info:
        load_settings(config, env=env)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 2, lines
    ours = next(text for text in lines if line in text)
    assert ours.endswith(f"(from {variable})")
    assert "is not JSON" in ours
    assert any(text.strip().startswith("interval: a duration needs a unit") for text in lines)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("interval: [5m\n", "config.yaml:2:1"),
        ("interval: 5m\ninterval: 6m\n", "config.yaml:2:1"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("interval: !!python/object:os.system x\n", "config.yaml:1:11"),
    ],
)
def test_yaml_problems(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="config file") as info:
        load_settings(write(tmp_path, text), env={})
    assert fragment in str(info.value)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).interval == timedelta(minutes=5)
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yaml"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_committer_defaults_to_author_and_can_differ() -> None:
    commit = CommitSettings(author_name="A", author_email="a@x", committer_name="C")
    assert commit.committer == ("C", "a@x")


def _settings_models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for value in vars(settings_module).values():
        if (isinstance(value, type) and issubclass(value, BaseModel)
                and value.__module__ == settings_module.__name__):
            found[value.__name__] = value
    return [found[name] for name in sorted(found)]


@pytest.mark.parametrize("model", _settings_models())
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    """Each field has a docstring (the string right under it) of more than a few words."""
    import ast
    import inspect

    source = inspect.getsource(inspect.getmodule(model))  # type: ignore[arg-type]
    tree = ast.parse(source)
    [cls] = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == model.__name__]
    documented: dict[str, str] = {}
    for node, following in zip(cls.body, [*cls.body[1:], None], strict=True):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            documented[node.target.id] = following.value.value
    for name in model.model_fields:
        assert len(documented.get(name, "")) > 10, f"{model.__name__}.{name}"


def test_ipv6_listen() -> None:
    http = HttpSettings(listen="[::1]:8081")
    assert (http.host, http.port) == ("::1", 8081)


def test_the_environment_decides_json_fields_as_pydantic_settings_does() -> None:
    """``Settings`` is a plain pydantic model (pydantic-settings is not imported at run time, issue 16);
    which fields take JSON from a variable must still be what pydantic-settings' ``field_is_complex``
    decides, for every field, including those added later."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    class Oracle(PydanticBaseSettingsSource):
        def get_field_value(self, field: object, field_name: str) -> tuple[object, str, bool]:
            raise NotImplementedError

        def __call__(self) -> dict[str, object]:
            return {}

    oracle = Oracle(BaseSettings)
    decided = {name: settings_module._EnvSource.field_is_complex(field)
               for name, field in Settings.model_fields.items()}
    assert decided == {name: oracle.field_is_complex(field) for name, field in Settings.model_fields.items()}
    assert decided["interval"] is False and decided["cache_dir"] is False
    assert decided["policy_dirs"] is True and decided["commit"] is True


def test_defaults_are_validated_as_pydantic_settings_did() -> None:
    """``validate_default`` and ``extra="forbid"``, as pydantic-settings' ``BaseSettings`` has them."""
    assert Settings.model_config.get("validate_default") is True
    assert Settings.model_config.get("extra") == "forbid"
