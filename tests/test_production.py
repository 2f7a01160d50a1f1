"""Production: render.yaml, deploy checks, start-up, gunicorn and static files."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

from jobs.conf import DEFAULTS

from .helpers import ROOT, database_url, wait_for
from .services import free_port

PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "ALLOWED_HOSTS": "127.0.0.1",
    "SECURE_SSL_REDIRECT": "0",
}


def manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def blueprint():
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def service(blueprint, kind):
    return next(s for s in blueprint["services"] if s["type"] == kind)


def env_keys(blueprint, svc):
    keys = {v["key"] for v in svc["envVars"] if "key" in v}
    for group in (v["fromGroup"] for v in svc["envVars"] if "fromGroup" in v):
        spec = next(g for g in blueprint["envVarGroups"] if g["name"] == group)
        keys |= {v["key"] for v in spec["envVars"]}
    return keys


def manage_commands(command_line):
    """The manage.py subcommands a shell command line runs."""
    words = command_line.replace("&&", " ").split()
    return [words[i + 1] for i, w in enumerate(words) if w.endswith("manage.py")]


def test_render__every_command_names_a_command_that_exists(blueprint):
    known = set(get_commands())
    web, worker = service(blueprint, "web"), service(blueprint, "worker")
    lines = [web["buildCommand"], web["preDeployCommand"], worker["buildCommand"]]
    script = (ROOT / worker["startCommand"]).read_text()

    named = [c for line in [*lines, script] for c in manage_commands(line)]
    assert {"collectstatic", "migrate", "rqworker-pool"} <= set(named)
    assert set(named) <= known
    assert os.access(ROOT / worker["startCommand"], os.X_OK)
    assert web["startCommand"].endswith("-c gunicorn.conf.py config.wsgi")
    assert (ROOT / "gunicorn.conf.py").exists()
    assert web["healthCheckPath"] == "/health"
    assert resolve(web["healthCheckPath"]).url_name == "health"


def test_render__builds_compile_bytecode_so_no_process_compiles_at_start(blueprint):
    # Without compiled bytecode every new process (a worker, each gunicorn
    # process) compiles the project and its libraries before its first job
    # or request.
    for kind in ("web", "worker"):
        assert (
            "uv sync --locked --no-dev --compile-bytecode"
            in (service(blueprint, kind)["buildCommand"])
        )


def test_render__web_and_worker_get_every_production_variable(blueprint):
    needed = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_ENV"}
    needed |= {"JOB_CONCURRENCY", "JOB_MAX_ATTEMPTS", "JOB_CLEANUP_AGE"}
    for kind in ("web", "worker"):
        assert needed <= env_keys(blueprint, service(blueprint, kind)), kind


def test_render__secret_key_is_generated_once_and_shared(blueprint):
    groups = {
        v["fromGroup"]
        for kind in ("web", "worker")
        for v in service(blueprint, kind)["envVars"]
        if "fromGroup" in v
    }
    assert len(groups) == 1
    shared = next(g for g in blueprint["envVarGroups"] if g["name"] in groups)
    secret = next(v for v in shared["envVars"] if v["key"] == "SECRET_KEY")
    assert secret == {"key": "SECRET_KEY", "generateValue": True}


def test_render__key_value_keeps_every_key_and_is_internal(blueprint):
    key_value = service(blueprint, "keyvalue")
    assert key_value["maxmemoryPolicy"] == "noeviction"
    assert key_value["ipAllowList"] == []
    assert service(blueprint, "worker")["maxShutdownDelaySeconds"] >= 60


def test_check_deploy__is_clean_with_production_variables():
    env = {**PRODUCTION_ENV, "SECURE_SSL_REDIRECT": ""}  # the default: on

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_start_up__refuses_production_without_a_secret_key():
    env = {**PRODUCTION_ENV, "SECRET_KEY": ""}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_worker__exits_non_zero_when_the_database_is_unreachable():
    env = {"DATABASE_URL": "postgres://jobs:s3cret@127.0.0.1:1/jobs"}

    result = manage("jobworker", "--burst", env=env)

    assert result.returncode == 1
    assert "database is unreachable" in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.django_db(transaction=True)
def test_gunicorn__serves_pages_and_hashed_static_files_then_stops_on_sigterm():
    env = {**PRODUCTION_ENV, "DATABASE_URL": database_url(), "PORT": str(free_port())}
    collected = manage("collectstatic", "--noinput", "-v0", env=env)
    assert collected.returncode == 0, collected.stderr
    manifest = json.loads((ROOT / "staticfiles/staticfiles.json").read_text())
    base_css = manifest["paths"]["admin/css/base.css"]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        login = wait_for(lambda: fetch(f"{base}/admin/login/"), message="gunicorn")
        static = urllib.request.urlopen(f"{base}/static/{base_css}", timeout=5)  # noqa: S310
        health = json.load(urllib.request.urlopen(f"{base}/health", timeout=5))  # noqa: S310

        assert login.status == 200
        assert health["checks"]["database"]["status"] == "healthy"
        assert static.status == 200
        assert "max-age=315360000" in static.headers["Cache-Control"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert "Shutting down" in server.stderr.read()


def fetch(url):
    try:
        return urllib.request.urlopen(url, timeout=2)  # noqa: S310 (our own server)
    except OSError:
        return None


def test_settings__every_job_setting_is_read_from_the_environment_and_documented():
    # One table of defaults (jobs.conf.DEFAULTS); the environment overrides
    # each entry, read as its default's type.
    env = {
        name: "0" if isinstance(default, bool) else "7"
        for name, default in DEFAULTS.items()
    }
    show = (
        "import json; from django.conf import settings; "
        "from jobs.conf import DEFAULTS; "
        "print(json.dumps({name: getattr(settings, name) for name in DEFAULTS}))"
    )

    result = manage("shell", "-c", show, env=env)

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.splitlines()[-1])
    for name, default in DEFAULTS.items():
        expected = False if isinstance(default, bool) else type(default)(7)
        assert (name, values[name]) == (name, expected)
        assert type(values[name]) is type(default), name
    readme = (ROOT / "README.md").read_text()
    assert [name for name in DEFAULTS if f"`{name}`" not in readme] == []
