"""The deployment files: the systemd unit (systemd-analyze verify), the nginx site, and the Dockerfile, whose
build steps run as a script give a tree that starts as its unprivileged user and serves all five languages."""
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT
from dockerfile_script import IMAGE_DIR, Build
from served_tree import TRANSLATED, assert_serves_every_language, new_port, stop

UNIT = ROOT / "deploy" / "postbox.service"
# The image's Python is Debian's 3.11 (python:3.11-slim-bookworm); the host's Debian python3 stands in for it.
IMAGE_PYTHON = "/usr/bin/python3"


def unit_settings(text):
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    assert shutil.which("systemd-analyze"), "install Debian's systemd (make deploy-tools)"
    # Installed where this checkout is, so that verify can check that ExecStart's gunicorn exists.
    installed = tmp_path / "postbox.service"
    installed.write_text(UNIT.read_text().replace("/opt/postbox", str(ROOT)))
    result = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True,
                            timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "postbox" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_the_unit_runs_hardened_as_a_dedicated_user_writing_only_its_state_directory():
    settings = unit_settings(UNIT.read_text())
    assert settings["User"] == ["postbox"] and settings["Group"] == ["postbox"]
    assert settings["StateDirectory"] == ["postbox"]
    assert settings["ProtectSystem"] == ["strict"] and settings["NoNewPrivileges"] == ["yes"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert "u postbox " in (ROOT / "deploy" / "postbox.sysusers").read_text()


def test_the_nginx_site_buffers_request_bodies_and_passes_the_client_address():
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    directives = re.findall(r"^\s*(\w+)\s+([^;{]*)[;{]", site, re.MULTILINE)
    settings = {name: value.strip() for name, value in directives}
    assert settings["proxy_request_buffering"] == "on"
    assert settings["proxy_buffering"] == "on"
    assert settings["client_max_body_size"] == "64k"  # POSTBOX_MAX_CONTENT_LENGTH's default
    assert settings["proxy_pass"] == "http://127.0.0.1:8000"
    assert "X-Forwarded-For $remote_addr" in site and "X-Forwarded-Proto $scheme" in site


@pytest.fixture
def image_root():
    """A directory an unprivileged user can reach (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="postbox-image-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_container_build_steps_give_a_tree_that_starts_and_serves_every_language(image_root):
    image = Build(ROOT, image_root, IMAGE_PYTHON).run(ROOT / "Dockerfile")
    app_dir = image_root / IMAGE_DIR.lstrip("/")
    uid, _, gid = image.user.partition(":")
    assert int(uid) != 0 and int(gid) != 0, "the server must not run as root"
    assert f"{IMAGE_DIR}/instance" in image.volumes
    assert any("/healthz" in part for part in image.healthcheck)
    assert sorted(path.parent.parent.name for path in app_dir.glob("translations/*/LC_MESSAGES/messages.mo")) \
        == sorted(TRANSLATED)
    assert not (app_dir / "instance" / "postbox.sqlite3").exists(), "a database was copied into the image"

    port = new_port()
    env = {**{key: value.replace(IMAGE_DIR, str(app_dir)) for key, value in image.env.items()},
           "PATH": "/usr/local/bin:/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(port)}
    command = [part.replace(IMAGE_DIR, str(app_dir)) for part in image.cmd]
    log_path = image_root / "server.log"
    server = start_as(command, app_dir, env, log_path, int(uid), int(gid))
    try:
        assert_serves_every_language(f"http://127.0.0.1:{port}", server, log_path)
        health = subprocess.run([part.replace(IMAGE_DIR, str(app_dir)) for part in image.healthcheck], env=env,
                                user=int(uid), group=int(gid), extra_groups=[], capture_output=True, timeout=30)
        assert health.returncode == 0, health.stderr
    finally:
        stop(server)
    database = app_dir / "instance" / "postbox.sqlite3"
    assert database.stat().st_uid == int(uid)


def start_as(command, cwd, env, log_path, uid, gid):
    log = open(log_path, "ab")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            user=uid, group=gid, extra_groups=[])
