"""Run a Dockerfile's build steps as a script, with the image's file system mapped into a directory.

No container engine runs where the tests run, so the Dockerfile is read instruction by instruction: COPY
copies from the build context minus .dockerignore, RUN runs in sh, ENV, WORKDIR and USER are kept, and
CMD and HEALTHCHECK are returned to be run. Paths under IMAGE_DIR are rewritten to the directory.
Only the instructions the Dockerfile uses are understood; any other fails the build, never passes silently.
"""
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_DIR = "/app"


@dataclass
class Image:
    base: str = ""
    env: dict = field(default_factory=dict)
    workdir: str = "/"
    user: str = "root"
    volumes: list = field(default_factory=list)
    cmd: list = field(default_factory=list)
    healthcheck: list = field(default_factory=list)
    healthcheck_options: str = ""


def instructions(text):
    """Yield (KEYWORD, argument) with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        keyword, _, argument = logical.strip().partition(" ")
        yield keyword.upper(), argument.strip()
        logical = ""


def ignored(relative, patterns):
    """Whether .dockerignore leaves the path out: a pattern matches it or a directory above it; **/ at any depth."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:length]) for length in range(1, len(parts) + 1)]
    for pattern in patterns:
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
            return True
    return False


class Build:
    def __init__(self, context, root, python):
        self.context = Path(context)
        self.root = Path(root)
        self.shims = self.root / ".shims"  # the image's `python`
        self.shims.mkdir(parents=True)
        (self.shims / "python").symlink_to(python)
        ignore_file = self.context / ".dockerignore"
        self.ignore = [line.strip() for line in ignore_file.read_text().splitlines()
                       if line.strip() and not line.startswith("#")] if ignore_file.exists() else []
        self.image = Image()
        self.log = []

    def here(self, text):
        """Rewrite the image's paths into the mapped directory."""
        return text.replace(IMAGE_DIR, str(self.root / IMAGE_DIR.lstrip("/")))

    def environment(self):
        return {"PATH": f"{self.shims}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root),
                "LANG": "C.UTF-8", **{key: self.here(value) for key, value in self.image.env.items()}}

    def run(self, dockerfile):
        for keyword, argument in instructions(Path(dockerfile).read_text()):
            getattr(self, f"do_{keyword.lower()}")(argument)
        return self.image

    def do_from(self, argument):
        self.image.base = argument

    def do_env(self, argument):
        for item in shlex.split(argument):
            key, _, value = item.partition("=")
            self.image.env[key] = value

    def do_workdir(self, argument):
        self.image.workdir = argument
        Path(self.here(argument)).mkdir(parents=True, exist_ok=True)

    def do_copy(self, argument):
        source, destination = shlex.split(argument)
        target = Path(self.here(destination))
        if source != ".":
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.context / source, target)
            return
        for directory, subdirectories, files in os.walk(self.context):
            relative_directory = os.path.relpath(directory, self.context)
            subdirectories[:] = [name for name in subdirectories if not ignored(
                os.path.normpath(os.path.join(relative_directory, name)), self.ignore)]
            for name in files:
                relative = os.path.normpath(os.path.join(relative_directory, name))
                if not ignored(relative, self.ignore):
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(self.context / relative, target / relative)

    def do_run(self, argument):
        result = subprocess.run(["sh", "-ec", self.here(argument)], cwd=self.here(self.image.workdir),
                                env=self.environment(), capture_output=True, text=True, timeout=900)
        self.log.append((argument, result.stdout + result.stderr))
        if result.returncode != 0:
            raise AssertionError(f"RUN {argument} failed:\n{result.stdout}\n{result.stderr}")

    def do_user(self, argument):
        self.image.user = argument

    def do_volume(self, argument):
        self.image.volumes += json.loads(argument)

    def do_expose(self, argument):
        pass  # the test chooses its own port

    def do_healthcheck(self, argument):
        options, _, command = argument.partition("CMD ")
        self.image.healthcheck_options = options.strip()
        self.image.healthcheck = json.loads(command)

    def do_cmd(self, argument):
        self.image.cmd = json.loads(argument)
