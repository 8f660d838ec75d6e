"""The SQL that only one store speaks, in one place: every other query is written once, for both.

A query asks `db.sql` for the piece it needs (`db.sql.greatest(...)`): SQLiteSQL and PostgreSQLSQL have the
same methods, one spelling each.
"""
import re

from schema import SEARCH_WORDS

# FTS5 reads a NUL as the end of the query and a control character or lone surrogate as a syntax error.
UNSEARCHABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class SQLiteSQL:
    """SQLite's spelling of what standard SQL spells differently or lacks: FTS5 search, JSON, planner hints."""

    name = "sqlite"

    def greatest(self, *terms):
        """The largest of the terms: SQLite's scalar MAX() with several arguments."""
        return f"MAX({', '.join(terms)})"

    def unindexed(self, expression):
        """The expression, kept from choosing the index: SQLite's planner skips an index on `+column`."""
        return f"+{expression}"

    # --- Search: an FTS5 external-content table, submissions_fts, kept by triggers (sqlite_schema.m003) ---

    def search_terms(self, text):
        """Turn what the owner typed into an FTS5 query: every word must match, as a prefix; no syntax errors."""
        words = [word.replace('"', '""') for word in UNSEARCHABLE.sub(" ", str(text or "")).split()]
        return " ".join(f'"{word}"*' for word in words)

    def matching_ids(self, newest_first=False):
        """A query of the ids of submissions matching the search terms in :search."""
        order = " ORDER BY rowid DESC" if newest_first else ""
        return f"SELECT rowid AS id FROM submissions_fts WHERE submissions_fts MATCH :search{order}"

    def matches_joined(self):
        """FROM … WHERE for submissions matching :search, streamed from the index (a LIMIT stops it early)."""
        return ("submissions_fts JOIN submissions ON submissions.id = submissions_fts.rowid"
                " WHERE submissions_fts MATCH :search")

    # --- The extra fields: a JSON object as text in submissions.extra ---

    def extra_field_names(self, where):
        """A query of the extra field names of the submissions matching `where`, in first-seen order."""
        # One pass: each name's first sighting as (received_at, id, place in its object), sortable as text.
        return ("SELECT fields.key, MIN(printf('%s %020d %010d', submissions.received_at, submissions.id,"
                f" fields.id)) AS first_seen FROM submissions, json_each(submissions.extra) AS fields WHERE {where}"
                " AND submissions.extra != '{}' GROUP BY fields.key ORDER BY first_seen")

    def extra_value(self, name, param):
        """The expression of the extra field `name`, whose key or JSON path the caller binds to :param."""
        if '"' in name or "\\" in name:
            # A name a JSON path cannot quote: look it up by key, slower but exact.
            return f"(SELECT value FROM json_each(submissions.extra) WHERE key = :{param})", name
        return f"json_extract(submissions.extra, :{param})", f'$."{name}"'

    def extra_with_nul(self):
        """submissions.extra when a value in it holds a NUL, which SQLite's JSON functions cut short; else NULL."""
        return "CASE WHEN instr(submissions.extra, '\\u0000') THEN submissions.extra END"

    def skip_locked(self, table):
        """Nothing: SQLite has one writer at a time, so no other transaction is claiming rows meanwhile."""
        return ""

    def prefixed_when_first_char(self, expression, first_chars):
        """The text of `expression`, with a ' in front when it starts with one of first_chars."""
        # Compared as bytes, not text, because SQLite's text functions stop at a NUL, which may be one of them.
        first_bytes = ", ".join(f"X'{ord(char):02X}'" for char in first_chars)
        return (f"CASE WHEN substr(CAST({expression} AS BLOB), 1, 1) IN ({first_bytes})"
                f" THEN '''' || {expression} ELSE {expression} END")


# The search query: the lexemes PostgreSQL makes of what the owner typed (the search configuration's own
# normalisation), each as a prefix, all required. No lexemes (punctuation alone) matches nothing.
TSQUERY = ("to_tsquery('simple', coalesce((SELECT string_agg(quote_literal(lexeme) || ':*', ' & ')"
           f" FROM unnest(to_tsvector('postbox_search', {SEARCH_WORDS.format(':search')}))), ''))")


class PostgreSQLSQL:
    """PostgreSQL's spelling: a tsvector column with a GIN index for search, json functions, SKIP LOCKED."""

    name = "postgresql"

    def greatest(self, *terms):
        return f"GREATEST({', '.join(terms)})"

    def unindexed(self, expression):
        """PostgreSQL's planner takes no hint; it weighs the index itself."""
        return expression

    # --- Search: submissions.search_vector, generated from the searched fields (schema.SEARCH_DOCUMENT) ---

    def search_terms(self, text):
        """What the owner typed, as words: the database turns them into lexemes (see TSQUERY)."""
        return " ".join(UNSEARCHABLE.sub(" ", str(text or "")).split())

    def matching_ids(self, newest_first=False):
        order = " ORDER BY id DESC" if newest_first else ""
        return f"SELECT id FROM submissions WHERE search_vector @@ {TSQUERY}{order}"

    def matches_joined(self):
        return f"submissions WHERE submissions.search_vector @@ {TSQUERY}"

    # --- The extra fields: a JSON object as text in submissions.extra (json, not jsonb: it keeps their order) ---

    def extra_field_names(self, where):
        return ("SELECT fields.key, MIN(submissions.received_at || ' ' || lpad(submissions.id::text, 20, '0')"
                " || ' ' || lpad(fields.place::text, 10, '0')) AS first_seen FROM submissions,"
                " json_each(submissions.extra::json) WITH ORDINALITY AS fields (key, value, place)"
                f" WHERE {where} AND submissions.extra != '{{}}' GROUP BY fields.key ORDER BY first_seen")

    def extra_value(self, name, param):
        return f"(submissions.extra::json ->> :{param})", name

    def extra_with_nul(self):
        """Never: PostgreSQL's text holds no NUL, and the forms refuse one."""
        return "NULL"

    def prefixed_when_first_char(self, expression, first_chars):
        firsts = ", ".join(f"chr({ord(char)})" for char in first_chars if char != "\0")
        return f"CASE WHEN left({expression}, 1) IN ({firsts}) THEN '''' || {expression} ELSE {expression} END"

    def skip_locked(self, table):
        """Rows another transaction is claiming are passed over, not waited for: each worker its own batch."""
        return f" FOR UPDATE OF {table} SKIP LOCKED"


DIALECTS = {"sqlite": SQLiteSQL(), "postgresql": PostgreSQLSQL()}
