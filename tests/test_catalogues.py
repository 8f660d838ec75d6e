"""Languages cannot be lost: started from a fresh clone without `make`, Postbox compiles its catalogues or
refuses to start with one line naming what is missing."""
import os
import re
import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest
from conftest import ROOT
from served_tree import (TRANSLATED, assert_serves_every_language, clean_environment, copy_as_fresh_clone,
                         new_port, start, stop, wait_for_page, send_button)

import catalogues


def readme_commands_without_make():
    """The README's commands for starting without make, as written there."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Without `make`.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block, "the README no longer says how to start without make"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_gunicorn_from_a_fresh_clone_as_the_readme_says_serves_the_russian_form(tmp_path):
    clone = copy_as_fresh_clone(tmp_path / "postbox")
    assert not list(clone.glob("translations/*/LC_MESSAGES/*.mo"))
    *preparations, serve = readme_commands_without_make()
    assert serve.startswith(".venv/bin/gunicorn ")
    port = new_port()
    env = clean_environment(PORT=str(port))
    for command in preparations:
        result = subprocess.run(["sh", "-ec", command], cwd=clone, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    server = start(["sh", "-ec", f"exec {serve}"], clone, env, tmp_path / "gunicorn.log")
    try:
        page = wait_for_page(f"http://127.0.0.1:{port}/contactus", server, tmp_path / "gunicorn.log",
                             headers={"Accept-Language": "ru"})
        assert 'lang="ru"' in page and send_button("ru") in page
        assert_serves_every_language(f"http://127.0.0.1:{port}", server, tmp_path / "gunicorn.log")
    finally:
        stop(server)
    # Compiled where the server may always write, never into the code.
    assert sorted(path.parent.parent.name for path in clone.glob("instance/translations/*/LC_MESSAGES/*.mo")) \
        == sorted(TRANSLATED)
    assert not list(clone.glob("translations/*/LC_MESSAGES/*.mo"))


def test_a_missing_catalogue_stops_start_up_with_one_line_naming_it(tmp_path):
    clone = copy_as_fresh_clone(tmp_path / "postbox")
    (clone / ".venv").symlink_to(ROOT / ".venv")
    (clone / "translations/hy/LC_MESSAGES/messages.po").unlink()
    result = subprocess.run([".venv/bin/gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"], cwd=clone,
                            env=clean_environment(PORT=str(new_port())), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("postbox:")]
    assert lines == ["postbox: cannot serve every language: "
                     f"{clone}/translations/hy/LC_MESSAGES/messages.po is missing: the hy pages cannot be served"]


def fake_app(tmp_path):
    root = tmp_path / "code"
    shutil.copytree(ROOT / "translations", root / "translations",
                    ignore=shutil.ignore_patterns("*.mo"))
    return SimpleNamespace(root_path=str(root), instance_path=str(tmp_path / "instance"))


def test_fresh_compiled_catalogues_beside_the_sources_are_used_as_they_are(tmp_path):
    app = fake_app(tmp_path)
    for language in TRANSLATED:
        catalogues._compile(f"{app.root_path}/translations/{language}/LC_MESSAGES/messages.po",
                            f"{app.root_path}/translations/{language}/LC_MESSAGES/messages.mo")
    assert catalogues.catalogue_directory(app) == f"{app.root_path}/translations"
    assert not os.path.exists(f"{app.instance_path}/translations")


def test_a_catalogue_older_than_its_source_is_compiled_again(tmp_path):
    app = fake_app(tmp_path)
    for language in TRANSLATED:
        catalogues._compile(f"{app.root_path}/translations/{language}/LC_MESSAGES/messages.po",
                            f"{app.root_path}/translations/{language}/LC_MESSAGES/messages.mo")
    po = f"{app.root_path}/translations/it/LC_MESSAGES/messages.po"
    later = time.time() + 10
    os.utime(po, (later, later))  # the .po was edited (git pull) after `make translations`
    assert catalogues.catalogue_directory(app) == f"{app.instance_path}/translations"
    compiled = f"{app.instance_path}/translations/it/LC_MESSAGES/messages.mo"
    assert os.path.getmtime(compiled) >= later
    before = os.stat(compiled).st_mtime_ns
    assert catalogues.catalogue_directory(app) == f"{app.instance_path}/translations"
    assert os.stat(compiled).st_mtime_ns == before, "compiled again although nothing changed"


def test_a_catalogue_that_cannot_be_compiled_is_named(tmp_path):
    app = fake_app(tmp_path)
    po = f"{app.root_path}/translations/ru/LC_MESSAGES/messages.po"
    with open(po, "a", encoding="utf-8") as file:
        file.write('\nmsgid "Broken"\n')  # no msgstr
    with pytest.raises(catalogues.CatalogueError, match=f"{po} cannot be compiled"):
        catalogues.catalogue_directory(app)
