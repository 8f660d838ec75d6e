"""The compiled gettext catalogues: every way of starting Postbox serves all five languages, or none starts.

`make translations` compiles translations/*/LC_MESSAGES/messages.mo, but the .mo files are build products that
a fresh clone, a plain `gunicorn …` or a copied tree does not have. So at start-up: when every .mo beside its
.po is present and not older, those serve; otherwise the .po files are compiled into the instance folder
(always writable, where the code may be read-only) and those serve. A .po that is missing or cannot be
compiled stops start-up with one line naming it.
"""
import os
import tempfile

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from config import LANGUAGES

SOURCE_DIRECTORY = "translations"
TRANSLATED = [language for language in LANGUAGES if language != "en"]  # English is the source text


class CatalogueError(RuntimeError):
    """A language's catalogue cannot be served."""


def catalogue_directory(app):
    """Return the directory of compiled catalogues for Flask-Babel, compiling them first when needed."""
    source = os.path.join(app.root_path, SOURCE_DIRECTORY)
    if all(_is_fresh(_path(source, language, "mo"), _po(source, language)) for language in TRANSLATED):
        return source
    compiled = os.path.join(app.instance_path, "translations")
    for language in TRANSLATED:
        target = _path(compiled, language, "mo")
        if not _is_fresh(target, _po(source, language)):
            _compile(_po(source, language), target)
    return compiled


def _path(directory, language, extension):
    return os.path.join(directory, language, "LC_MESSAGES", f"messages.{extension}")


def _po(source, language):
    po = _path(source, language, "po")
    if not os.path.isfile(po):
        raise CatalogueError(f"{po} is missing: the {language} pages cannot be served")
    return po


def _is_fresh(mo, po):
    return os.path.isfile(mo) and os.path.getsize(mo) > 0 and os.path.getmtime(mo) >= os.path.getmtime(po)


def _compile(po, mo):
    try:
        with open(po, "rb") as file:
            catalog = read_po(file, abort_invalid=True)
    except Exception as error:  # Babel raises several kinds for a broken catalogue
        raise CatalogueError(f"{po} cannot be compiled: {error}") from None
    if not any(message.id and message.string and not message.fuzzy for message in catalog):
        raise CatalogueError(f"{po} has no usable translation (is it all fuzzy?)")
    os.makedirs(os.path.dirname(mo), exist_ok=True)
    # Written aside and renamed: several workers starting at once never read a half-written file.
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(mo), suffix=".partial")
    with os.fdopen(fd, "wb") as file:
        write_mo(file, catalog)
    # Stamped no older than its source, so a .po with a clock-skewed future time is not compiled at every start.
    stamp = max(os.path.getmtime(partial), os.path.getmtime(po))
    os.utime(partial, (stamp, stamp))
    os.replace(partial, mo)
