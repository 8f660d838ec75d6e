"""Fill a Postbox database with N realistic multilingual submissions, fast, for measuring the inbox and export.

Example: python bench/make_big_db.py /tmp/big.sqlite3 1000000
"""
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import database  # noqa: E402

BATCH = 10_000
PEOPLE = {
    "ru": (["Иван Петров", "Мария Иванова", "Алексей Смирнов", "Ольга Кузнецова"],
           ["Букет к пятнице", "Доставка цветов", "Свадебное оформление"],
           ["Здравствуйте! Нужен букет из 25 красных роз к пятнице.\nДоставка по адресу: ул. Ленина, 5.",
            "Добрый день, сколько стоит оформление зала на 80 гостей?"]),
    "it": (["Lucia Bianchi", "Marco Rossi", "Giulia Romano", "Luca Esposito"],
           ["Mazzo di rose", "Consegna a domicilio", "Fiori per matrimonio"],
           ["Buongiorno, vorrei un mazzo di girasoli per sabato mattina.\nGrazie mille!",
            "Salve, fate consegne a Trastevere? Il budget è di circa 60 €."]),
    "hy": (["Արմեն Սարգսյան", "Անի Հակոբյան", "Դավիթ Պետրոսյան"],
           ["Ծաղկեփունջ", "Առաքում", "Հարսանյաց ծաղիկներ"],
           ["Բարեւ Ձեզ, ուզում եմ պատվիրել վարդերի փունջ ուրբաթ օրվա համար։",
            "Որքա՞ն արժե առաքումը Երեւանի կենտրոն։"]),
    "hi": (["प्रिया शर्मा", "राहुल वर्मा", "अनीता सिंह"],
           ["फूलों का गुलदस्ता", "शादी की सजावट", "होम डिलीवरी"],
           ["नमस्ते, मुझे शनिवार के लिए गुलाब का गुलदस्ता चाहिए।\nकृपया कीमत बताएं।",
            "क्या आप दिल्ली में शादी की सजावट करते हैं? लगभग 200 मेहमान होंगे।"]),
    "en": (["John Smith", "Emily Clark", "=cmd|' /C calc'!A0", "Sam O'Neil"],
           ["Bouquet for Friday", "Wedding flowers", "Quote, please"],
           ['Hi, could you deliver 12 "Avalanche" roses on Friday?\nThanks, John',
            "Hello — what are your opening hours on Sunday?"]),
}
EXTRA_FIELDS = [{}, {}, {"budget": "60 €"}, {"delivery_day": "Saturday", "colour": "red"}, {"guests": "80"}]
STATUSES = ["new"] * 3 + ["in_progress", "answered", "answered", "answered", "spam"]
DELIVERY = ["sent"] * 18 + ["failed", "pending"]


def make_rows(count, start_id, now, rng, last_id):
    submissions, outbox = [], []
    for offset in range(count):
        submission_id = start_id + offset
        language = rng.choice(list(PEOPLE))
        names, subjects, messages = PEOPLE[language]
        name = rng.choice(names)
        # Ids and times rise together over a year, as in a real inbox (a few seconds of jitter).
        age = 365 * 24 * 3600 * (last_id - submission_id) / last_id
        received = now - timedelta(seconds=age + rng.uniform(0, 5))
        status = rng.choice(STATUSES)
        submissions.append((
            submission_id, rng.choice(["contactus", "contactus", "wedding"]),
            received.isoformat(timespec="microseconds"),
            name, f"lead{submission_id}@example.com", rng.choice(["", "+39 333 1234567", "+7 999 123-45-67"]),
            rng.choice(subjects), rng.choice(messages), json.dumps(rng.choice(EXTRA_FIELDS), ensure_ascii=False),
            "https://florist.example/contact", "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            language, status, "links" if status == "spam" else "",
        ))
        if status != "spam":
            state = rng.choice(DELIVERY)
            created = received.timestamp()
            outbox.append((submission_id, f"<{uuid.uuid4().hex}@florist.example>", "owner@florist.example",
                           state, 1, created, created, created + 1 if state == "sent" else None,
                           "550 5.1.1 mailbox unavailable" if state == "failed" else None))
    return submissions, outbox


SUBMISSION_COLUMNS = ("id", "form", "received_at", "name", "email", "phone", "subject", "message", "extra", "page",
                      "ip", "user_agent", "language", "status", "spam_reason")
OUTBOX_COLUMNS = ("submission_id", "message_id", "target", "state", "attempts", "created_at", "next_attempt_at",
                  "sent_at", "last_error")


def main(path, total):
    db = database.open_db(path)
    database.migrate(db)
    db.execute("PRAGMA synchronous=OFF")  # a generated file: speed over durability
    rng = random.Random(20261123)
    now = datetime.now(timezone.utc)
    start_id = (db.execute("SELECT MAX(id) FROM submissions").scalar() or 0) + 1
    started = time.monotonic()
    for done in range(0, total, BATCH):
        submissions, outbox = make_rows(min(BATCH, total - done), start_id + done, now, rng, start_id + total)
        with database.write_transaction(db):
            db.execute(f"INSERT INTO submissions ({', '.join(SUBMISSION_COLUMNS)})"
                       f" VALUES ({', '.join(':' + name for name in SUBMISSION_COLUMNS)})",
                       [dict(zip(SUBMISSION_COLUMNS, row)) for row in submissions])
            db.execute(f"INSERT INTO outbox (kind, channel, {', '.join(OUTBOX_COLUMNS)})"
                       f" VALUES ('lead', 'email', {', '.join(':' + name for name in OUTBOX_COLUMNS)})",
                       [dict(zip(OUTBOX_COLUMNS, row)) for row in outbox])
        print(f"\r{done + len(submissions):,} rows, {time.monotonic() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    db.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        raise SystemExit("usage: python bench/make_big_db.py PATH N")
    main(sys.argv[1], int(sys.argv[2]))
