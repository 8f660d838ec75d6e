"""Input that used to give a 500: each now gets a clear 4xx, or is served, and never a stack trace."""
import json
import socket

import pytest

from conftest import VALID, count_rows, rows
from inbox_fixtures import add_submission, inbox_user, owner, post  # noqa: F401

BOUNDARY = "postboxboundary"


def multipart(parts):
    """A multipart body from (disposition parameters, value) pairs, as raw bytes."""
    body = b""
    for parameters, value in parts:
        body += (f"--{BOUNDARY}\r\nContent-Disposition: form-data{parameters}\r\n\r\n").encode() + value + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def fields(values):
    return [(f'; name="{name}"', value.encode("utf-8")) for name, value in values.items()]


def send(client, encoding, values):
    headers = {"Accept": "application/json"}
    if encoding == "json":
        return client.post("/contactus", data=json.dumps(values), content_type="application/json", headers=headers)
    if encoding == "urlencoded":
        from urllib.parse import urlencode
        return client.post("/contactus", data=urlencode(values), headers=headers,
                           content_type="application/x-www-form-urlencoded")
    return client.post("/contactus", data=multipart(fields(values)), headers=headers,
                       content_type=f"multipart/form-data; boundary={BOUNDARY}")


ENCODINGS = ("json", "urlencoded", "multipart")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("character", ["\ufffe", "\uffff", "\ufdd0", "\U0010ffff"])
def test_non_characters_get_the_same_clear_400_in_every_encoding(client, db, encoding, character):
    response = send(client, encoding, {**VALID, "message": f"hi {character}"})
    assert response.status_code == 400
    assert response.json["errors"][0]["code"] == "INVALID_TEXT"
    assert count_rows(db, "submissions") == 0


def test_a_lone_surrogate_in_json_gets_a_clear_400(client, db):
    body = '{"name": "Anna", "email": "anna@example.com", "message": "hi \\ud800"}'
    response = client.post("/contactus", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["errors"][0]["code"] == "INVALID_TEXT"
    key = client.post("/contactus", data='{"\\udc00": "x", "name": "A"}', content_type="application/json")
    assert key.status_code == 400
    assert count_rows(db, "submissions") == 0


@pytest.mark.parametrize("raw", [b"message=hi%ED%A0%80&name=A&email=a@example.com", b"message=hi\xed\xa0\x80"])
def test_a_surrogate_in_utf8_is_invalid_utf8_urlencoded(client, db, raw):
    response = client.post("/contactus", data=raw, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert count_rows(db, "submissions") == 0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_typed_replacement_character_is_text_in_every_encoding(client, db, encoding):
    response = send(client, encoding, {**VALID, "message": "Prezzo � euro"})
    assert response.status_code == 200, response.data
    assert db.execute("SELECT message FROM submissions").scalar() == "Prezzo � euro"


def test_multipart_invalid_utf8_is_refused_and_a_part_without_a_name_is_no_field(client, db):
    bad = client.post("/contactus", data=multipart(fields(VALID) + [('; name="note"', b"\xff\xfe")]),
                      content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert bad.status_code == 400
    nameless = client.post("/contactus", data=multipart(fields(VALID) + [("", b"orphan")]),
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert nameless.status_code == 303
    assert json.loads(db.execute("SELECT extra FROM submissions").scalar()) == {}


def raw_request(server, request_bytes):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request_bytes)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def chunked(body, size_line=None):
    chunks = b""
    for start in range(0, len(body), 4096):
        piece = body[start:start + 4096]
        chunks += (size_line or f"{len(piece):x}".encode()) + b"\r\n" + piece + b"\r\n"
    return chunks + b"0\r\n\r\n"


def chunked_post(server, body, size_line=None):
    head = (b"POST /contactus HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    return raw_request(server, head + chunked(body, size_line))


def test_chunked_bodies_over_the_limit_get_413_and_store_nothing(live_server_factory, database_url):
    server = live_server_factory()
    small = chunked_post(server, b"name=Anna&email=anna@example.com&message=" + b"x" * 3000)
    assert small.startswith(b"HTTP/1.1 200"), small[:300]
    too_big = chunked_post(server, b"name=Anna&email=anna@example.com&message=" + b"y" * 80 * 1024)
    assert too_big.startswith(b"HTTP/1.1 413"), too_big[:300]
    assert [len(message) for message, in rows(database_url, "SELECT message FROM submissions")] == [3000]


def test_a_bad_chunk_size_is_a_4xx(live_server_factory):
    server = live_server_factory()
    answer = chunked_post(server, b"name=Anna&email=anna@example.com&message=hello", size_line=b"zz")
    assert answer.startswith(b"HTTP/1.1 4") or answer == b"", answer[:300]
    assert b"Traceback" not in answer


def test_a_host_outside_trusted_hosts_gets_400_from_the_real_server(live_server_factory):
    server = live_server_factory(TRUSTED_HOSTS="forms.example")
    answer = raw_request(server, b"GET /contactus HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    posted = raw_request(server, b"POST /contactus HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n"
                                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\nname=A")
    assert posted.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("query", ["after=x|²", "after=x|99999999999999999999", "after=|1", "after=x|-1",
                                   "after=2026-01-01|9223372036854775808"])
def test_malformed_cursors_are_400(app, owner, db, query):
    assert owner.get(f"/admin/?{query}").status_code == 400


@pytest.mark.parametrize("path", ["/admin/?to=9999-12-31", "/admin/?from=0001-01-01&to=9999-12-31",
                                  "/admin/export.csv?to=9999-12-31", "/admin/export.json?from=0001-01-01"])
def test_dates_at_the_ends_of_the_calendar_are_no_bound(app, owner, db, path):
    add_submission(db, app)
    response = owner.get(path)
    assert response.status_code == 200 and "Anna" in response.get_data(as_text=True)


def test_ids_past_sqlites_integers_name_nothing(app, owner, db):
    assert owner.get(f"/admin/s/{2 ** 63}").status_code == 404
    assert post(owner, f"/admin/s/{2 ** 64}/status", {"status": "spam"}).status_code == 404
    assert post(owner, "/admin/bulk", {"ids": ["1", "²"], "action": "spam"}).status_code == 400
    assert post(owner, "/admin/bulk", {"ids": [str(2 ** 63)], "action": "spam"}).status_code == 400
    submission_id = add_submission(db, app)
    assert post(owner, f"/admin/s/{submission_id}/resend", {"outbox_id": str(2 ** 70)}).status_code == 302


def test_login_next_with_a_line_break_goes_to_the_inbox(client, inbox_user):
    from inbox_fixtures import log_in
    response = log_in(client, query_string={"next": "/admin/\r\nSet-Cookie: x=1"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
