"""One lead per double-click: named submissions are stored and notified once, simultaneous duplicates once."""
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import database
import submissions
from conftest import VALID, rows


def post(url, data, headers=(), as_json=True):
    headers = dict(headers)
    if as_json:
        body = json.dumps(data).encode()
        headers.update({"Content-Type": "application/json", "Accept": "application/json"})
    else:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url + "/contactus", data=body, headers=headers)
    opener = urllib.request.build_opener(NoRedirect())
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def at_once(count, action):
    """Run action(i) in `count` threads released together; return the results in order."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(index):
        barrier.wait()
        results[index] = action(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def statuses(database_url):
    return rows(database_url, "SELECT status, spam_reason FROM submissions ORDER BY id")


def assert_no_more_mail(smtp_server, count):
    smtp_server.wait_for(count)
    time.sleep(1)  # a second notification, if there were one, would have arrived by now
    assert len(smtp_server.messages) == count


def test_two_simultaneous_identical_posts_give_one_lead_and_one_spam(live_server_factory, smtp_server, database_url):
    server = live_server_factory(SPAM_DUPLICATE_MINUTES=10)
    answers = at_once(2, lambda index: post(server.url, VALID))
    assert [status for status, _body in answers] == [200, 200]
    assert sorted(statuses(database_url)) == [
        ("new", ""), ("spam", "same message from the same address minutes ago")]
    assert_no_more_mail(smtp_server, 1)


def test_a_hosted_form_submitted_twice_is_one_lead_and_one_email(live_server_factory, smtp_server, database_url):
    server = live_server_factory()
    with urllib.request.urlopen(server.url + "/contactus", timeout=10) as response:
        token = response.read().decode().split('name="_token" value="')[1].split('"')[0]
    fields = {**VALID, "_token": token}
    first = post(server.url, fields, as_json=False)
    again = at_once(2, lambda index: post(server.url, fields, as_json=False))
    assert [status for status, _body in [first, *again]] == [303, 303, 303]
    assert statuses(database_url) == [("new", "")]
    assert_no_more_mail(smtp_server, 1)


def test_an_idempotency_key_answers_a_repeat_with_the_first_submission(live_server_factory, smtp_server, database_url):
    server = live_server_factory()
    key = {"Idempotency-Key": "5b0c1e7e-1d52-4c59-8a57-4f0b8c1f9a10"}
    answers = at_once(3, lambda index: post(server.url, VALID, key))
    ids = {json.loads(body)["id"] for status, body in answers if status == 200}
    assert [status for status, _body in answers] == [200, 200, 200] and len(ids) == 1
    other = post(server.url, {**VALID, "message": "A different message"}, {"Idempotency-Key": "another"})
    assert other[0] == 200 and json.loads(other[1])["id"] not in ids
    assert len(statuses(database_url)) == 2
    assert_no_more_mail(smtp_server, 2)


def test_a_key_is_forgotten_after_a_day(db):
    record = {"form": "contactus", **VALID}
    start = 1_800_000_000.0
    with database.write_transaction(db):
        first = submissions.store_once(db, record, key=("contactus", "k"), now=start)
        repeat = submissions.store_once(db, record, key=("contactus", "k"), now=start + 86_399)
        submissions.forget_old_keys(db, start + 86_401)
        later = submissions.store_once(db, record, key=("contactus", "k"), now=start + 86_401)
    assert repeat == submissions.Saved(first.id, repeated=True)
    assert not later.repeated and later.id != first.id
