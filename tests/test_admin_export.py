"""Export: streamed CSV (BOM, RFC 4180, formula cells neutralised, extra fields as columns) and JSON."""
import csv
import io
import json

import pytest
from conftest import deliver_all
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401

import admin

MULTILINGUAL = {
    "ru": ("Иван Петров", "Нужен букет из роз"),
    "it": ("Lucia Bianchi", "Vorrei un mazzo di girasoli, più grande possibile"),
    "hy": ("Արմեն Սարգսյան", "Բարեւ, ուզում եմ ծաղիկներ պատվիրել"),
    "hi": ("प्रिया शर्मा", "नमस्ते, मुझे शादी के लिए फूल चाहिए"),
    "en": ("John Smith", 'Quote "this", then a comma, and\r\na second line'),
}


@pytest.fixture
def config(config):
    config["TIMEZONE"] = "Europe/Rome"
    return config


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_download_keeps_every_script_and_field(app, owner, db, smtp_server):
    for language, (name, message) in MULTILINGUAL.items():
        add_submission(db, app, name=name, message=message, language=language,
                       received_at="2026-07-01T10:00:00.000000+00:00")
    deliver_all(app, db)
    response = owner.get("/admin/export.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="postbox-')
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel then reads the file as UTF-8
    rows = read_csv(body.decode("utf-8-sig"))
    assert [(row["name"], row["message"]) for row in rows] == list(MULTILINGUAL.values())
    assert {row["delivery"] for row in rows} == {"sent"}
    assert rows[0]["received_at"] == "2026-07-01T12:00:00+02:00"  # ISO 8601 with the owner's offset
    assert rows[0]["status"] == "new" and rows[0]["form"] == "contactus" and rows[0]["id"] == "1"
    assert b'"Quote ""this"", then a comma, and\r\na second line"' in body  # RFC 4180 quoting
    assert body.count(b"\r\n") == 1 + len(MULTILINGUAL) + 1  # CRLF row ends, plus the one inside a quoted cell


def assert_formula_neutralised(app, owner, db, start):
    cell = f"{start}HYPERLINK(\"http://evil.example\",\"click\")"
    add_submission(db, app, name=cell, subject=cell, message="fine", extra={"budget": cell})
    [row] = read_csv(owner.get("/admin/export.csv").get_data(as_text=True).lstrip("\ufeff"))
    assert row["name"] == row["subject"] == row["budget"] == "'" + cell
    assert row["message"] == "fine"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_formula_cells_are_neutralised(app, owner, db, start):
    assert_formula_neutralised(app, owner, db, start)


# PostgreSQL's text cannot hold a NUL (and the forms refuse one): only a SQLite file can have stored it.
@pytest.mark.sqlite_only
def test_a_cell_starting_with_nul_is_neutralised(app, owner, db):
    assert_formula_neutralised(app, owner, db, "\0")


def test_extra_fields_are_the_union_in_first_seen_order(app, owner, db):
    add_submission(db, app, extra={"colour": "red", "size": "L"})
    add_submission(db, app)
    add_submission(db, app, extra={"delivery_day": "Saturday", "colour": "blue", "name": "clash"})
    rows = read_csv(owner.get("/admin/export.csv").get_data(as_text=True).lstrip("\ufeff"))
    header = list(rows[0])
    assert header[:9] == list(admin.BASE_COLUMNS)
    assert header[9:13] == ["colour", "size", "delivery_day", "extra:name"]
    assert header[-2:] == ["delivery", "first_answer_hours"]
    assert [(row["colour"], row["size"], row["delivery_day"]) for row in rows] == [
        ("red", "L", ""), ("", "", ""), ("blue", "", "Saturday")]
    assert rows[2]["extra:name"] == "clash" and rows[2]["name"] == "Anna Rossi"


def test_download_applies_the_current_filters(app, owner, db):
    add_submission(db, app, name="Иван Петров")
    spam = add_submission(db, app, name="Casino Bonus", status="spam", queue_email=False)
    rows = read_csv(owner.get("/admin/export.csv?status=spam").get_data(as_text=True).lstrip("\ufeff"))
    assert [row["id"] for row in rows] == [str(spam)] and rows[0]["delivery"] == "not sent (spam)"
    rows = read_csv(owner.get("/admin/export.csv?q=петров").get_data(as_text=True).lstrip("\ufeff"))
    assert [row["name"] for row in rows] == ["Иван Петров"]


def test_json_download(app, owner, db):
    add_submission(db, app, name="=Lucia", extra={"colore": "rosso"})
    response = owner.get("/admin/export.json")
    assert response.is_streamed
    [record] = json.loads(response.get_data(as_text=True))
    assert record["name"] == "=Lucia"  # JSON is not a spreadsheet: values stay exact
    assert record["extra"] == {"colore": "rosso"} and record["delivery"] == "pending"


def test_cli_csv_to_a_file(app, db, runner, tmp_path):
    for language, (name, message) in MULTILINGUAL.items():
        add_submission(db, app, name=name, message=message, extra={"lingua": language})
    output = tmp_path / "export.csv"
    result = runner.invoke(args=["export", "--format", "csv", "--output", str(output)])
    assert result.exit_code == 0, result.output
    data = output.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    rows = read_csv(data.decode("utf-8"))
    assert [row["name"] for row in rows] == [name for name, _ in MULTILINGUAL.values()]
    assert [row["lingua"] for row in rows] == list(MULTILINGUAL)
    runner.invoke(args=["export", "--output", str(output), "--bom"])
    assert output.read_bytes().startswith(b"\xef\xbb\xbf")


def test_cli_json_to_stdout(app, db, runner):
    add_submission(db, app, name="Արմեն", extra={"գույն": "կարմիր"})
    add_submission(db, app, name="प्रिया")
    result = runner.invoke(args=["export", "--format", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [record["name"] for record in records] == ["Արմեն", "प्रिया"]
    assert records[0]["extra"] == {"գույն": "կարմիր"} and records[1]["extra"] == {}


def test_cli_export_of_an_empty_inbox(runner):
    assert json.loads(runner.invoke(args=["export", "--format", "json"]).stdout) == []
    assert runner.invoke(args=["export"]).stdout.startswith("id,form,status,received_at,name")


def test_export_has_help(runner):
    result = runner.invoke(args=["export", "--help"])
    assert "Example: flask --app app export" in result.output
