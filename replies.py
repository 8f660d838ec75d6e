"""The owner's answers: replies kept as a submission's history, and the moment a lead first left "new"."""
import outbox
from database import utc_now_iso, write_transaction


def mark_first_answer(db, submission_ids, at):
    """Record, inside the caller's transaction, that these leads were acted on: reminders stop, the clock stops."""
    leads = [{"id": submission_id, "at": at} for submission_id in submission_ids]
    if not leads:
        return
    db.execute("UPDATE submissions SET first_answer_at = :at WHERE id = :id AND first_answer_at IS NULL", leads)
    # A reminder still waiting to be sent is about a lead no longer waiting.
    db.execute("UPDATE outbox SET state = 'off', last_error = 'the lead was answered' WHERE submission_id = :id"
               " AND kind = 'reminder' AND state = 'pending' AND lease_token IS NULL", leads)


def reply_notification(config, address):
    """The outbox row of a reply: one email to the visitor, with a Message-ID of its own."""
    message_id = outbox.CHANNELS["email"](config).new_message_id()
    return {"kind": "reply", "channel": "email", "target": address, "message_id": message_id}


def save_reply(db, submission_id, author, body, notification, now):
    """Keep the reply, queue its email to the visitor and mark the lead answered, in one transaction."""
    at = utc_now_iso()
    with write_transaction(db):
        params = {"submission_id": submission_id, "author": author, "body": body, "at": at,
                  "message_id": notification["message_id"]}
        reply_id = db.execute(
            "INSERT INTO replies (submission_id, author, body, created_at, message_id)"
            " VALUES (:submission_id, :author, :body, :at, :message_id) RETURNING id", params).scalar_one()
        outbox.queue(db, submission_id, [{**notification, "reply_id": reply_id}], now)
        db.execute("UPDATE submissions SET status = 'answered', status_by = :author, status_at = :at"
                   " WHERE id = :submission_id", params)
        mark_first_answer(db, [submission_id], at)
    return reply_id


def get_reply(db, reply_id):
    row = db.execute("SELECT * FROM replies WHERE id = :id", {"id": reply_id}).mappings().first()
    return dict(row) if row else None


def replies_of(db, submission_id):
    """A submission's replies, oldest first, each with the state of its email."""
    return [dict(row) for row in db.execute(
        "SELECT replies.*, outbox.state AS delivery FROM replies LEFT JOIN outbox ON outbox.reply_id = replies.id"
        " WHERE replies.submission_id = :id ORDER BY replies.id", {"id": submission_id}).mappings()]
