"""Fill a Postbox database with N realistic submissions: `python -m bench.generate_submissions PATH N`.

Five languages (the app's own: en, ru, it, hy, hi), messages of a few sentences, three years of dates,
a realistic status mix, and for every non-spam submission its sent owner's email and delivery log entry.
The schema comes from storage.migrate, so the file is exactly what Postbox itself creates.
"""
import json
import random
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import storage  # noqa: E402

NAMES = {
    "en": ["Emily Clarke", "James O'Brien", "Sarah Mitchell", "David Thompson", "Olivia Bennett", "Michael Grant"],
    "ru": ["Иван Петров", "Анна Смирнова", "Дмитрий Козлов", "Елена Васильева", "Ольга Новикова", "Сергей Морозов"],
    "it": ["Giulia Bianchi", "Marco Rossi", "Francesca Romano", "Luca Esposito", "Chiara Colombo", "Paolo Ricci"],
    "hy": ["Արամ Պետրոսյան", "Անի Հովհաննիսյան", "Գոռ Սարգսյան", "Մարիամ Գրիգորյան", "Տիգրան Մկրտչյան"],
    "hi": ["अमित शर्मा", "प्रिया वर्मा", "राहुल गुप्ता", "सुनीता सिंह", "विकास कुमार", "नेहा पटेल"],
}
SENTENCES = {
    "en": ["I would like to order a bouquet of roses for Saturday.", "Do you deliver to the north side of town?",
           "Could you send me a quote for wedding flowers for about eighty guests?",
           "The tulips I bought last week were lovely, thank you.", "Is it possible to pay by bank transfer?",
           "Please call me back after five in the afternoon.", "We need a wreath for a funeral on Tuesday.",
           "What are your opening hours during the holidays?", "Can I add a handwritten card to the order?"],
    "ru": ["Хотел бы заказать букет роз на субботу.", "Вы доставляете цветы в пригород?",
           "Пришлите, пожалуйста, расценки на оформление свадьбы на восемьдесят гостей.",
           "Тюльпаны, купленные на прошлой неделе, были чудесны, спасибо.", "Можно ли оплатить переводом?",
           "Перезвоните мне, пожалуйста, после пяти вечера.", "Нужен венок на вторник.",
           "Как вы работаете в праздничные дни?", "Можно добавить открытку к заказу?"],
    "it": ["Vorrei ordinare un mazzo di rose per sabato.", "Consegnate anche in periferia?",
           "Potreste mandarmi un preventivo per i fiori di un matrimonio con ottanta invitati?",
           "I tulipani della settimana scorsa erano splendidi, grazie.", "È possibile pagare con bonifico?",
           "Richiamatemi dopo le cinque del pomeriggio, per favore.", "Ci serve una corona per martedì.",
           "Quali sono gli orari durante le feste?", "Posso aggiungere un biglietto scritto a mano?"],
    "hy": ["Կցանկանայի պատվիրել վարդերի փունջ շաբաթ օրվա համար։", "Դուք առաքում եք արվարձաններ։",
           "Խնդրում եմ ուղարկել հարսանեկան ծաղիկների գնառաջարկ ութսուն հյուրի համար։",
           "Անցյալ շաբաթվա կակաչները հրաշալի էին, շնորհակալություն։", "Հնարավոր է վճարել փոխանցումով։",
           "Խնդրում եմ զանգահարել ժամը հինգից հետո։", "Երեքշաբթի օրվա համար պսակ է պետք։"],
    "hi": ["मैं शनिवार के लिए गुलाब का गुलदस्ता मंगवाना चाहता हूँ।", "क्या आप शहर के बाहर भी डिलीवरी करते हैं?",
           "कृपया अस्सी मेहमानों की शादी के फूलों का अनुमान भेजें।", "पिछले हफ्ते के ट्यूलिप बहुत सुंदर थे, धन्यवाद।",
           "क्या बैंक ट्रांसफर से भुगतान हो सकता है?", "कृपया शाम पाँच बजे के बाद फ़ोन करें।",
           "मंगलवार के लिए एक पुष्पचक्र चाहिए।"],
}
SUBJECTS = {"en": "Order", "ru": "Заказ", "it": "Ordine", "hy": "Պատվեր", "hi": "ऑर्डर"}
STATUSES = ["answered"] * 62 + ["new"] * 20 + ["in_progress"] * 8 + ["spam"] * 10
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
          "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"]
LANGUAGE_WEIGHTS = {"en": 40, "it": 25, "ru": 20, "hy": 8, "hi": 7}


def submission_rows(count, rng):
    """Yield (submission row, outbox row or None) tuples, oldest first."""
    start = datetime.now(timezone.utc) - timedelta(days=3 * 365)
    step = timedelta(days=3 * 365) / count
    languages = [language for language, weight in LANGUAGE_WEIGHTS.items() for _ in range(weight)]
    for number in range(1, count + 1):
        language = rng.choice(languages)
        name = rng.choice(NAMES[language])
        email = f"{name.split()[0].lower()}.{number}@example.com" if language in ("en", "it") else f"client{number}@example.org"
        message = " ".join(rng.choices(SENTENCES[language], k=rng.randint(1, 6)))
        received = start + step * number
        status = rng.choice(STATUSES)
        extra = json.dumps({"colour": "red"} if number % 7 == 0 else {}, ensure_ascii=False)
        row = (number, "contactus", received.isoformat(timespec="microseconds"), name, email,
               f"+39 055 {number % 10_000_000:07d}" if number % 3 == 0 else "", f"{SUBJECTS[language]} #{number}",
               message, extra, "", "", "https://florist.example/contact", f"192.0.2.{number % 250 + 1}",
               rng.choice(AGENTS), language, status, "honeypot field filled in" if status == "spam" else "")
        outbox = None if status == "spam" else (
            number, number, "owner", f"<{number}.postbox@florist.example>", '["owner@florist.example"]',
            "sent", 1, received.timestamp(), received.timestamp(), 0, received.timestamp() + 1)
        yield row, outbox


def generate(path, count, seed=5):
    """Create the database at `path` (which must not exist) holding `count` submissions."""
    db = storage.open_db(path)
    storage.migrate(db)
    db.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    rng = random.Random(seed)
    rows, outbox = [], []
    with conn:
        for row, message in submission_rows(count, rng):
            rows.append(row)
            if message:
                outbox.append(message)
            if len(rows) == 20_000:
                _insert(conn, rows, outbox)
                rows, outbox = [], []
        _insert(conn, rows, outbox)
        conn.execute("INSERT INTO delivery_log (outbox_id, at, outcome, detail)"
                     " SELECT id, sent_at, 'sent', '' FROM outbox")
    conn.execute("ANALYZE")
    conn.close()


def _insert(conn, rows, outbox):
    conn.executemany(
        "INSERT INTO submissions (id, form, received_at, name, email, phone, subject, message, extra, reply_to,"
        " mail_subject, page, ip, user_agent, language, status, spam_reason) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT INTO outbox (id, submission_id, kind, message_id, recipients, state, attempts, created_at,"
        " next_attempt_at, lease_until, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", outbox)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.generate_submissions PATH N")
    generate(sys.argv[1], int(sys.argv[2]))
