"""SQLite's search index keeps the 2-, 3- and 4-character prefixes of words (Alembic 0003): searches find what
they found before it, on an installation migrated with its submissions in place and on a new one."""
import alembic.command
import pytest

from inbox_fixtures import add_submission
import database
import inbox_queries

MESSAGES = ["Vorrei un mazzo di rose per sabato.", "Roses, twelve of them", "Rosemary and tulips",
            "Иванов просит букет роз", "A callback about the wedding", "rosa", "R"]
# Prefixes of each length the index keeps, and shorter and longer ones, which it does not.
SEARCHES = ["r", "ro", "ros", "rose", "roses", "Rosem", "tul", "tulips", "Ив", "Иван", "роз", "wedding call",
            "mazzo sab", "nothing"]


def add(db, app, message):
    return add_submission(db, app, queue_email=False, name="Maria Bianchi", email="maria@example.com", message=message)


def found(db):
    """Each search's first page and its counts, as the inbox asks for them."""
    results = {}
    for text in SEARCHES:
        counts, capped, rows = inbox_queries.search_first_page(db, {"q": text}, 50, 1000)
        results[text] = ([row["id"] for row in rows], counts, capped, inbox_queries.status_counts(db, {"q": text}))
    return results


def search_index_definition(db):
    return db.execute("SELECT sql FROM sqlite_master WHERE name = 'submissions_fts'").scalar_one()


@pytest.mark.sqlite_only
def test_an_installation_migrated_with_its_submissions_finds_the_same_rows(app, db):
    ids = {message: add(db, app, message) for message in MESSAGES}
    assert "prefix='2 3 4'" in search_index_definition(db)
    database.migrate(db, "0002", alembic.command.downgrade)
    assert "prefix" not in search_index_definition(db)
    before = found(db)
    assert before["ros"][0] == [ids[MESSAGES[5]], ids[MESSAGES[2]], ids[MESSAGES[1]], ids[MESSAGES[0]]]
    assert before["Ив"][0] == [ids[MESSAGES[3]]] and before["nothing"][0] == []

    database.migrate(db)
    assert "prefix='2 3 4'" in search_index_definition(db)
    assert found(db) == before
    # And it keeps up with what comes after: a new submission is found by its prefixes at once.
    new = add(db, app, "Rosette for the table")
    assert inbox_queries.search_first_page(db, {"q": "ro"}, 50, 1000)[2][0]["id"] == new


@pytest.mark.sqlite_only
def test_migrating_again_from_an_older_revision_keeps_one_prefix_option(app, db):
    add(db, app, MESSAGES[0])
    with database.write_transaction(db):
        db.execute("UPDATE alembic_version SET version_num = '0002'")
    database.migrate(db)
    assert search_index_definition(db).count("prefix=") == 1
    assert inbox_queries.search_first_page(db, {"q": "maz"}, 50, 1000)[2]
