"""The servers the tests start themselves: Debian's Redis and PostgreSQL, on loopback, answering for real."""
import redis
import sqlalchemy


def test_redis_answers_ping_set_and_get(redis_url):
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping() is True
        client.set("postbox:test", "ciao")
        assert client.get("postbox:test") == b"ciao"
        assert client.config_get("bind")["bind"] == "127.0.0.1"


def test_redis_url_starts_empty_for_each_test(redis_url):
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


def test_postgresql_stores_and_reads_back_a_row_through_sqlalchemy_and_psycopg(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)"))
        connection.execute(sqlalchemy.text("INSERT INTO notes (body) VALUES (:body)"), {"body": "Շնորհակալություն"})
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT id, body FROM notes")).all() == [(1, "Շնորհակալություն")]
        assert connection.execute(sqlalchemy.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
    engine.dispose()


def test_each_test_gets_a_fresh_empty_postgresql_database(postgres_server, postgres_url):
    other = postgres_server.create_database()
    assert other != postgres_url
    engine = sqlalchemy.create_engine(other)
    with engine.connect() as connection:
        tables = connection.execute(sqlalchemy.text(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")).scalar()
    engine.dispose()
    postgres_server.drop_database(other)
    assert tables == 0
