"""Inbox passwords: argon2id hashes, older scrypt hashes upgraded at login, and a bound on hashing at once."""
import functools
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from werkzeug.security import check_password_hash

# OWASP's argon2id minimum (m=19 MiB, t=2, p=1): 19 MiB a hash, where scrypt at N=2^17 took 128 MB.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Hashes computed at once, per process; more login attempts wait their turn, so a flood of logins costs
# time, not memory. Their own threads, not the request's: glibc keeps a freed 19 MiB block in the arena
# of the thread that used it, so hashing in every request thread would keep 19 MiB per thread.
CONCURRENT_HASHES = 2


@functools.cache
def _hashing_threads():
    """Real threads for hashing: under gevent's worker, gevent's own pool, so other requests go on meanwhile."""
    from gevent import monkey
    if monkey.is_module_patched("threading"):
        from gevent.threadpool import ThreadPoolExecutor as GeventThreadPoolExecutor
        return GeventThreadPoolExecutor(max_workers=CONCURRENT_HASHES)
    return ThreadPoolExecutor(max_workers=CONCURRENT_HASHES, thread_name_prefix="postbox-hash")


def hash_password(password):
    return _hashing_threads().submit(HASHER.hash, password).result()


def verify_password(password_hash, password):
    """Tell whether the password matches the stored hash, argon2id or (from before) Werkzeug's scrypt."""
    return _hashing_threads().submit(_verify, password_hash, password).result()


def _verify(password_hash, password):
    if not password_hash.startswith("$argon2"):
        return check_password_hash(password_hash, password)
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_upgrade(password_hash):
    """A hash from before argon2id, or with weaker parameters than today's, is replaced at the next good login."""
    return not password_hash.startswith("$argon2") or HASHER.check_needs_rehash(password_hash)
