"""Django's SECRET_KEY: from the environment, or made once into a file only the app reads.

The key signs sessions, password-reset links and JWTs: whoever knows it can be any user. So a
key written anywhere in this repository (compose, the Kubernetes demo, an old development
default) is refused, and a fresh installation makes its own at first start.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# Every key this repository ever shipped as a default or placeholder: public, so worthless.
PUBLIC_KEYS = frozenset(
    {
        "change-me",
        "collectstatic-only",
        "compose-only-secret-change-me",
        "demo-only-secret-key-do-not-use-in-production",
        "dev-only-insecure-key-for-a-local-machine-change-me-in-production",
    }
)


def load(value: str, path: Path) -> str:
    """SECRET_KEY's value if set, else the key in path (made there if missing)."""
    if value:
        check(value, "SECRET_KEY")
        return value
    try:
        key = read(path)
    except FileNotFoundError:
        key = create(path)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"No SECRET_KEY is set and none could be made or read in {path} ({exc.strerror}). "
            "Set SECRET_KEY, or SECRET_KEY_FILE to a path this user may write."
        ) from None
    check(key, f"The key in {path}")
    return key


def check(key: str, where: str) -> None:
    if key.strip() in PUBLIC_KEYS or key.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            f"{where} is a published example key: anyone could sign sessions and tokens "
            "with it. Unset SECRET_KEY to have a key made for you at first start, or set it "
            "to a long random value (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )


def read(path: Path) -> str:
    mode = os.stat(path).st_mode
    if mode & 0o077:
        raise ImproperlyConfigured(
            f"{path} holds the secret key but other users may read it (mode "
            f"{mode & 0o777:o}). Run: chmod 600 {path}"
        )
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty. Delete it to have a new key made.")
    return key


def create(path: Path) -> str:
    """Write a new key to path, readable by this user only. Processes starting together (web,
    worker) race here: the key is written to a file of its own and linked into place, so
    exactly one wins and the others read the winner's whole key."""
    key = secrets.token_urlsafe(50)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"No SECRET_KEY is set and none could be made in {path} ({exc.strerror}). Set "
            "SECRET_KEY, or SECRET_KEY_FILE to a path this user may write (a key is made "
            "there at first start and kept)."
        ) from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return read(path)  # another process made it first
    finally:
        os.unlink(draft)
    return key
