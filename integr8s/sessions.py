"""Sessions in the database, as Django keeps them, made in one query rather than two."""

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.utils.crypto import get_random_string


class SessionStore(db.SessionStore):
    def _get_new_session_key(self) -> str:
        """A new key without first asking whether it is taken: Django's did (a query, for
        each anonymous API client's first run), and then inserted it with must_create, whose
        INSERT refuses a taken key anyway (create() then draws another)."""
        return get_random_string(32, VALID_KEY_CHARS)
